"""The Redis gate: Lua scripts loaded once, one-line calls, degraded mode when Redis is gone.

Redis only gates. Every answer here is advisory except "full", and even that is corrected by
the `reconcile` job; Postgres decides. When Redis cannot be reached the gate is bypassed for a
short while (circuit breaker) so that bookings go through Postgres alone without waiting on
timeouts.

`REDIS_URL` names one Redis (`redis://`, `rediss://`) or a Redis Cluster by one seed node
(`redis+cluster://host:port`, `rediss+cluster://` with TLS). Every script touches the keys of one
hash tag, `{office:date}` (or `rate:{...}`), so each runs on the one primary of its slot.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import errors, metrics
from .config import ConfigError
from .resp import GateConnection, command, fast_target

log = logging.getLogger(__name__)

_BREAKER_SECONDS = 2.0
# A refused connection opens the breaker at once; slow answers only when they keep coming
# (one slow reply on a busy machine must not send a whole flash crowd to Postgres).
_SLOW_ANSWERS_TO_OPEN = 3
_MAX_CONNECTIONS = 64
# What a gate call may raise: the cluster client's own errors (SlotNotCoveredError, no node to
# ask) are RedisClusterException, outside RedisError.
_ERRORS = (RedisError, RedisClusterException, OSError)
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
T = TypeVar("T")


class Gate(enum.Enum):
    TAKEN = "taken"
    FULL = "full"
    MISSING = "missing"  # Redis lost the day's counters: Postgres alone decides
    NO_WINDOW = "no_window"  # the day is counted, the window is not: Postgres will refuse
    BYPASSED = "bypassed"  # Redis unreachable: Postgres alone decides
    RATE_LIMITED = "rate_limited"
    DUPLICATE = "duplicate"  # the Idempotency-Key's first request passed already: the key answers


_ANSWERS = {
    "missing": Gate.MISSING,
    "nowindow": Gate.NO_WINDOW,
    "rate": Gate.RATE_LIMITED,
    "dup": Gate.DUPLICATE,
}
# (who: a stable hash of the identity, attempts allowed, per how many seconds)
Attempts = tuple[str, int, int]
# (a stable hash of the request's API key and Idempotency-Key, seconds its mark lives)
Once = tuple[str, int]


def day_key(office_id: str, day: date) -> str:
    """One hash per office and day; the hash tag keeps each script on one cluster slot."""
    return f"slots:{{{office_id}:{day.isoformat()}}}"


def cluster_seed(url: str) -> str | None:
    """The plain URL of the seed node when `url` names a Redis Cluster, else None."""
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}://{rest}" if plain and sep else None


def _script(client: aioredis.Redis | RedisCluster, name: str) -> AsyncScript:
    text = resources.files(__package__).joinpath(f"lua/{name}.lua").read_text()
    return client.register_script(text)


class Counters:
    def __init__(self, url: str, timeout_s: float) -> None:
        self._client: aioredis.Redis | RedisCluster | None = None
        # Cluster only: calls in flight, at most one node's connections (see _run).
        self._calls: asyncio.Semaphore | None = None
        self._wait_s = max(5.0, timeout_s * 10)
        if seed := cluster_seed(url):
            # Scripts go by EVALSHA to the primary of their first key's slot; NOSCRIPT is
            # answered by SCRIPT LOAD on every primary. No retry inside the client: an error
            # reaches the breaker at once, and the next call re-reads the slots.
            self._client = RedisCluster.from_url(
                seed,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                health_check_interval=0,
                max_connections=_MAX_CONNECTIONS,
                retry=Retry(NoBackoff(), 0),
            )
            self._calls = asyncio.Semaphore(_MAX_CONNECTIONS)
        elif url:
            # A blocking pool: a burst waits for a connection instead of failing the gate.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry_on_timeout=False,
                health_check_interval=0,
                max_connections=64,
                timeout=self._wait_s,
            )
            self._client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        # The take of a plain redis:// URL goes over one pipelined connection (resp.py).
        target = None if self._calls is not None else fast_target(url)
        self._gate = GateConnection(*target, timeout_s=timeout_s) if target else None
        if self._client is not None:
            self._take = _script(self._client, "take")
            self._give = _script(self._client, "give")
            self._fill = _script(self._client, "fill")
            self._rate = _script(self._client, "rate")
        self._down_until = 0.0
        self._slow = 0
        self._warned_config = False
        self._up = bool(url)
        metrics.redis_up.set(1 if url else 0)

    async def start(self) -> None:
        """Learn a cluster's nodes and slots before serving: left to the first command, every
        caller of a crowd would find the client uninitialized at once (redis-py #3935). A
        cluster not reachable yet is bypassed like a down Redis; the next call asks again."""
        if isinstance(self._client, RedisCluster):
            try:
                await self._client.initialize()
            except _ERRORS as exc:
                self._failed(exc)

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call to Redis. On a cluster, redis-py has no blocking pool: past max_connections
        on a node it raises MaxConnectionsError (#3135). Holding calls in flight to as many as
        one node has connections makes a burst wait its turn, as the BlockingConnectionPool
        does; one that waits too long is "busy", as a blocking pool's timeout is."""
        if self._calls is None:
            return await call()
        try:
            async with asyncio.timeout(self._wait_s):
                await self._calls.acquire()
        except TimeoutError:
            raise MaxConnectionsError("every cluster connection busy") from None
        try:
            return await call()
        finally:
            self._calls.release()

    def _usable(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        # A slow answer, or all pooled connections busy: Redis is loaded, not gone.
        busy = isinstance(exc, MaxConnectionsError) or (
            isinstance(exc, RedisConnectionError) and "No connection available" in str(exc)
        )
        if busy or isinstance(exc, TimeoutError | RedisTimeoutError):
            self._slow += 1
            if self._slow < _SLOW_ANSWERS_TO_OPEN:
                return
        if self._down_until <= time.monotonic():
            log.warning("redis unreachable, gate bypassed: %s", type(exc).__name__)
        self._down_until = time.monotonic() + _BREAKER_SECONDS
        self._up = False
        metrics.redis_up.set(0)

    def _ok(self) -> None:
        self._slow = 0
        if not self._up:  # a gauge write is a file write under serve: only on a change
            self._up = True
            metrics.redis_up.set(1)

    async def take(
        self,
        office_id: str,
        day: date,
        start: str,
        seats: int,
        attempts: Attempts | None = None,
        once: Once | None = None,
    ) -> Gate:
        """Take seats at the gate; with `attempts`, count the person's try first (one round
        trip for both). Raises RateLimited when the person tried too often. With `once`, the
        request's Idempotency-Key: DUPLICATE (nothing taken) when a request of the key passed
        the gate before (take.lua)."""
        result, wait = Gate.BYPASSED, 0
        if self._usable():
            key = day_key(office_id, day)
            who, limit, window_s = attempts or ("", 0, 0)
            keys = [key, f"{key}:tries:{who}"]
            args: list[str | int] = [start, seats, limit, window_s]
            if once is not None:
                keys.append(f"{key}:once:{once[0]}")
                args.append(once[1])
            try:
                if self._gate is not None:
                    answer = await self._gate_take(keys, args)
                else:
                    answer = await self._run(lambda: self._take(keys=keys, args=args))
            except _ERRORS as exc:
                self._failed(exc)
            else:
                self._ok()
                if isinstance(answer, bytes):
                    text, _, seconds = answer.decode().partition(":")
                    result = _ANSWERS[text]
                    wait = int(seconds or 0)
                else:
                    result = Gate.TAKEN if int(answer) >= 0 else Gate.FULL
        metrics.child(metrics.gate, result.value).inc()
        if result is Gate.RATE_LIMITED:
            raise errors.RateLimited(wait)
        return result

    async def _gate_take(self, keys: list[str], args: list[str | int]) -> Any:
        """take.lua over the pipelined connection; a Redis that lost the script (NOSCRIPT,
        after a restart) is asked through redis-py, which loads it again."""
        assert self._gate is not None
        reply = await self._gate.call(command("EVALSHA", self._take.sha, len(keys), *keys, *args))
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                return await self._take(keys=keys, args=args)
            raise reply
        return reply

    async def give(self, office_id: str, day: date, start: str, seats: int) -> None:
        if not self._usable():
            return
        try:
            await self._run(lambda: self._give(keys=[day_key(office_id, day)], args=[start, seats]))
        except _ERRORS as exc:
            self._failed(exc)

    async def fill(
        self, office_id: str, day: date, remaining: dict[str, int], ttl_s: int, replace: bool
    ) -> int:
        """Write seats remaining per window start, the day's key to live `ttl_s` seconds from
        Redis's own now; returns windows changed (0 if Redis down)."""
        if not remaining or not self._usable():
            return 0
        args: list[str | int] = [ttl_s, "replace" if replace else "missing"]
        for start, seats in remaining.items():
            args += [start, max(0, seats)]
        try:
            changed = await self._run(lambda: self._fill(keys=[day_key(office_id, day)], args=args))
        except _ERRORS as exc:
            self._failed(exc)
            return 0
        self._ok()
        return int(changed)

    async def over_limit(self, key: str, limit: int, window_s: int) -> int:
        """0 if allowed, else seconds to wait. Allowed when Redis is down (fail open)."""
        if limit <= 0 or not self._usable():
            return 0
        try:
            wait = await self._run(
                lambda: self._rate(keys=[f"rate:{{{key}}}"], args=[limit, window_s])
            )
        except _ERRORS as exc:
            self._failed(exc)
            return 0
        return int(wait)

    async def remember(self, key: str, field: str, value: str, ttl_s: int) -> None:
        """A hint kept beside the counters (a field of hash `key`, living `ttl_s` seconds of
        Redis's own clock); lost or absent hints only cost a question to Postgres."""
        if not self._usable():
            return
        client = self._client
        assert client is not None

        async def call() -> None:
            await client.hset(key, field, value)
            await client.expire(key, ttl_s)

        try:
            await self._run(call)
        except _ERRORS as exc:
            self._failed(exc)

    async def recall(self, key: str, field: str) -> str | None:
        if not self._usable():
            return None
        client = self._client
        assert client is not None
        try:
            found = await self._run(lambda: client.hget(key, field))
        except _ERRORS as exc:
            self._failed(exc)
            return None
        return found.decode() if isinstance(found, bytes) else None

    async def forget(self, key: str, field: str) -> None:
        if not self._usable():
            return
        client = self._client
        assert client is not None
        try:
            await self._run(lambda: client.hdel(key, field))
        except _ERRORS as exc:
            self._failed(exc)

    async def eviction_policy(self) -> str | None:
        """Redis's `maxmemory-policy`; None when it cannot be read (Redis off or down, or a
        managed Redis that forbids CONFIG GET). On a cluster, every primary's: the first that
        is not `noeviction`, if any."""
        client = self._client
        if client is None:
            return None
        try:
            if isinstance(client, RedisCluster):
                found: Any = await self._run(
                    lambda: client.config_get(
                        "maxmemory-policy", target_nodes=RedisCluster.PRIMARIES
                    )
                )
            else:
                found = await client.config_get("maxmemory-policy")
        except ClusterDownError:
            return None
        except ResponseError:  # CONFIG disabled or not permitted for this user
            if not self._warned_config:
                log.warning(
                    "redis refuses CONFIG GET: cannot check that maxmemory-policy is noeviction;"
                    " an evicted counter turns the gate into a lottery"
                )
                self._warned_config = True
            return None
        except _ERRORS:
            return None
        if not isinstance(found, dict):
            return None
        # A cluster answers per node ({node: {name: value}}), unless it has only one.
        answers = [v for v in found.values() if isinstance(v, dict)] or [found]
        policies = [str(a["maxmemory-policy"]) for a in answers if "maxmemory-policy" in a]
        if len(policies) != len(answers):
            return None
        return next((p for p in policies if p != "noeviction"), policies[0] if policies else None)

    async def check_eviction(self, allow: bool) -> None:
        """Refuse to start on a Redis that may evict the gate's counters: every policy but
        `noeviction` may (they carry TTLs, so `volatile-*` evicts them too), and a lost
        counter admits a crowd to Postgres at random. `allow` makes it a warning."""
        policy = await self.eviction_policy()
        if policy is None or policy == "noeviction":
            return
        message = (
            f"redis maxmemory-policy is {policy!r}: it may evict the gate's counters; set it to"
            " 'noeviction' (or SLOTS_REDIS_ALLOW_EVICTION=1 to run anyway)"
        )
        if not allow:
            raise ConfigError(message)
        log.warning(message)

    async def ping(self) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            if isinstance(client, RedisCluster):  # every primary: each holds part of the gate
                await self._run(lambda: client.ping(target_nodes=RedisCluster.PRIMARIES))
            else:
                await client.ping()
        except _ERRORS as exc:
            self._failed(exc)
            return False
        self._down_until = 0.0
        self._ok()
        return True

    async def close(self) -> None:
        if self._gate is not None:
            self._gate.close()
        if isinstance(self._client, RedisCluster):
            await self._client.aclose()
        elif self._client is not None:
            # The pool was handed in, so the client would not close it by itself.
            await self._client.aclose(close_connection_pool=True)
