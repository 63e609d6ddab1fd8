"""Offices and services (the business types): admin writes and the in-process cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from . import errors
from .db import connection, queries
from .models import (
    CancelCutoff,
    FirstCome,
    HoursRange,
    Lottery,
    OfficeIn,
    OfficeOut,
    Release,
    ServiceIn,
    ServiceOut,
)

_CHANNEL = "slots_catalog"
_CHECK_SECONDS = 2.0  # each copy checks the version this often, notified or not
_LIVE_S = 3 * _CHECK_SECONDS  # a copy silent this long is gone (killed): writes stop waiting
_WAIT_SECONDS = 2.0  # a write waits at most this long for every live copy
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Office:
    id: str
    name: str
    timezone: str
    tz: ZoneInfo
    services: tuple[str, ...]
    window_minutes: int
    hours: dict[str, list[HoursRange]]
    # API 1.1: how new days are released, and since when by lottery (None: first come).
    release: Release = field(default_factory=FirstCome)
    lottery_since: datetime | None = None

    @property
    def lottery(self) -> Lottery | None:
        return self.release if isinstance(self.release, Lottery) else None

    def out(self) -> OfficeOut:
        return OfficeOut(
            id=self.id,
            name=self.name,
            timezone=self.timezone,
            services=list(self.services),
            window_minutes=self.window_minutes,
            hours=self.hours,
            release=self.release,
        )


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    cancel_cutoff: CancelCutoff
    max_party_size: int
    requires_reference: bool
    # API 1.1: the business notice (业务须知), the documents to bring, whether a booking must
    # accept the notice.
    notice: str | None = None
    documents: tuple[str, ...] = ()
    notice_required: bool = False

    def out(self) -> ServiceOut:
        return ServiceOut(
            id=self.id,
            name=self.name,
            cancel_cutoff=self.cancel_cutoff,
            max_party_size=self.max_party_size,
            requires_reference=self.requires_reference,
            notice=self.notice,
            documents=list(self.documents),
            notice_required=self.notice_required,
        )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidRequest(f"unknown timezone {name!r}") from None


class Catalog:
    """Offices and services are small and rarely change: every process keeps them in memory.

    A write bumps the catalog's version in its own transaction and NOTIFYs it; each process
    reloads at once when told (and checks every few seconds anyway, in case a notification was
    lost), then reports the version it serves. The write is answered only once every live copy
    serves it, so a caller who got its 200 finds the change on every worker and replica. Reads
    never wait for a reload (only for the first load): code inside a transaction never needs a
    second pooled connection for it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._offices: dict[str, Office] = {}
        self._services: dict[str, Service] = {}
        self.version = -1  # -1 until the first load
        self._reader = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._catching_up: set[asyncio.Task[None]] = set()

    async def start(self, dsn: str) -> None:
        """Load, then follow changes made anywhere (LISTEN on a connection of its own)."""
        await self._catch_up()
        self._follower = asyncio.get_running_loop().create_task(self._follow(dsn))

    async def _follow(self, dsn: str) -> None:
        listener: asyncpg.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    if listener is None or listener.is_closed():
                        listener = await asyncpg.connect(dsn)
                        await listener.add_listener(_CHANNEL, self._told)
                    await self._catch_up()
                except Exception as exc:  # keep serving the copy we have; try again soon
                    log.warning("catalog follow failed: %s", type(exc).__qualname__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), _CHECK_SECONDS)
        finally:
            if listener is not None:
                await listener.close()

    def _told(self, *_: object) -> None:
        task = asyncio.get_running_loop().create_task(self._catch_up_quietly())
        self._catching_up.add(task)
        task.add_done_callback(self._catching_up.discard)

    async def _catch_up_quietly(self) -> None:
        try:
            await self._catch_up()
        except Exception as exc:  # the next check tries again
            log.warning("catalog reload failed: %s", type(exc).__qualname__)

    async def _catch_up(self) -> None:
        """Reload if the catalog changed, then report the version served."""
        async with self._lock:
            async with connection(self._pool) as conn:
                current = await conn.fetchval(queries["catalog_version"])
            if current != self.version:
                await self._reload()
            async with connection(self._pool) as conn:
                await conn.execute(queries["catalog_reader_seen"], self._reader, self.version)

    async def _served_everywhere(self, version: int) -> None:
        """After a write: this copy reloads, then wait (a bounded while) until every live
        copy serves `version`."""
        await self._catch_up()
        deadline = time.monotonic() + _WAIT_SECONDS
        while time.monotonic() < deadline:
            async with connection(self._pool) as conn:
                behind = await conn.fetchval(queries["catalog_readers_behind"], version, _LIVE_S)
            if not behind:
                return
            await asyncio.sleep(0.005)
        log.warning("catalog version %d not yet served by %d copies", version, behind)

    async def _fresh(self) -> None:
        if self.version < 0:  # never loaded (start() not called, or its load failed)
            await self._catch_up()

    async def _reload(self) -> None:
        async with connection(self._pool) as conn, conn.transaction(isolation="repeatable_read"):
            version = await conn.fetchval(queries["catalog_version"])
            offices = await conn.fetch(queries["all_offices"])
            services = await conn.fetch(queries["all_services"])
        self._offices = {
            r["id"]: Office(
                id=r["id"],
                name=r["name"],
                timezone=r["timezone"],
                tz=ZoneInfo(r["timezone"]),
                services=tuple(r["services"]),
                window_minutes=r["window_minutes"],
                hours=msgspec.convert(r["hours"], dict[str, list[HoursRange]]),
                release=msgspec.convert(r["release"] or {"mode": "first_come"}, Release),
                lottery_since=r["lottery_since"],
            )
            for r in offices
        }
        self._services = {
            r["id"]: Service(
                id=r["id"],
                name=r["name"],
                cancel_cutoff=msgspec.convert(r["cancel_cutoff"], CancelCutoff),
                max_party_size=r["max_party_size"],
                requires_reference=r["requires_reference"],
                notice=r["notice"],
                documents=tuple(r["documents"]),
                notice_required=r["notice_required"],
            )
            for r in services
        }
        self.version = version

    async def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            await self._follower
        await asyncio.gather(*self._catching_up, return_exceptions=True)
        with contextlib.suppress(Exception):  # the row would be ignored once silent anyway
            async with connection(self._pool) as conn:
                await conn.execute(queries["catalog_reader_gone"], self._reader)

    async def office(self, office_id: str) -> Office:
        await self._fresh()
        found = self._offices.get(office_id)
        if found is None:
            raise errors.NotFound(f"no office {office_id!r}")
        return found

    async def service(self, service_id: str) -> Service:
        await self._fresh()
        found = self._services.get(service_id)
        if found is None:
            raise errors.NotFound(f"no service {service_id!r}")
        return found

    async def offices(self) -> list[Office]:
        await self._fresh()
        return sorted(self._offices.values(), key=lambda o: o.id)

    async def services(self) -> list[Service]:
        await self._fresh()
        return sorted(self._services.values(), key=lambda s: s.id)

    async def put_service(self, service_id: str, body: ServiceIn, now: object) -> Service:
        async with connection(self._pool) as conn, conn.transaction():
            await conn.execute(
                queries["upsert_service"],
                service_id,
                body.name,
                msgspec.to_builtins(body.cancel_cutoff),
                body.max_party_size,
                body.requires_reference,
                now,
                body.notice,
                body.documents,
                body.notice_required,
            )
            version = await conn.fetchval(queries["catalog_changed"])
        await self._served_everywhere(version)
        return await self.service(service_id)

    async def put_office(self, office_id: str, body: OfficeIn, now: object) -> Office:
        zone(body.timezone)
        async with connection(self._pool) as conn, conn.transaction():
            known = {r["id"] for r in await conn.fetch(queries["service_ids"], body.services)}
            missing = [s for s in body.services if s not in known]
            if missing:
                raise errors.InvalidRequest(f"unknown services {missing}; PUT them first")
            await conn.execute(
                queries["upsert_office"],
                office_id,
                body.name,
                body.timezone,
                body.services,
                body.window_minutes,
                msgspec.to_builtins(body.hours),
                now,
                msgspec.to_builtins(body.release),
            )
            version = await conn.fetchval(queries["catalog_changed"])
        await self._served_everywhere(version)
        return await self.office(office_id)
