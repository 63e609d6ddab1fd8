"""CLI: dev | serve | drain | scheduler | migrate | seed | bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from pathlib import Path

from .config import ConfigError, Settings, environment, export, load_settings
from .logs import configure

log = logging.getLogger("slots_service")


def serve(settings: Settings) -> None:
    """The API under granian, until SIGINT/SIGTERM (SIGTERM drains first: see drain.py)."""
    import multiprocessing

    from granian.constants import Interfaces, Loops

    from . import drain

    # Fresh worker processes: each imports prometheus_client only once the environment names
    # the shared metrics directory (a forked worker would inherit in-memory values).
    multiprocessing.set_start_method("spawn", force=True)
    path = drain.prepare(settings)
    try:
        drain.server(
            settings,
            path,
            target="slots_service.app:asgi_app",
            factory=True,
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            loop=Loops.uvloop,
            websockets=False,
            backlog=2048,
            log_access=False,
        ).serve()
    finally:
        drain.clear(path)


async def _scheduler(settings: Settings) -> None:
    from prometheus_client import start_http_server

    from .jobs import Scheduler
    from .metrics import scrape_registry
    from .runtime import Runtime

    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=scrape_registry())
    rt = await Runtime.start(settings)
    scheduler = Scheduler(rt)
    scheduler.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await scheduler.stop()
    await rt.close()


async def _prepare(settings: Settings, demo: bool) -> None:
    """Migrate, optionally load the demo catalog, open the horizon, fill Redis."""
    from . import demo as demo_catalog
    from .db import migrate
    from .jobs import run_job
    from .runtime import Runtime

    applied = await migrate(settings.database_url)
    log.info("migrations applied: %s", applied or "none pending")
    rt = await Runtime.start(settings)
    try:
        if demo:
            services, offices = await demo_catalog.load(rt)
            log.info("demo catalog: %d services, %d offices", services, offices)
        await run_job(rt, "open-horizon")
        await run_job(rt, "reconcile")
    finally:
        await rt.close()


def dev(args: argparse.Namespace) -> int:
    """Everything on one machine: embedded Postgres and Valkey unless URLs are given."""
    from .devservers import DevServers

    root = Path(args.data).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = dict(environment())
    servers = DevServers(root, postgres=not env.get("DATABASE_URL"), redis=not env.get("REDIS_URL"))
    servers.start()
    try:
        # The API workers read their settings from the environment: hand them ours.
        found: dict[str, str] = {}
        if not env.get("DATABASE_URL"):
            found["DATABASE_URL"] = servers.database_url
        if not env.get("REDIS_URL"):
            found["REDIS_URL"] = servers.redis_url
        if not env.get("SLOTS_PII_KEY"):
            key_file = root / "pii_key"
            if not key_file.exists():
                key_file.write_text(secrets.token_hex(32))
                key_file.chmod(0o600)
            found["SLOTS_PII_KEY"] = key_file.read_text().strip()
        if not env.get("SLOTS_API_KEYS"):
            admin = "dev-" + secrets.token_urlsafe(24)
            found["SLOTS_API_KEYS"] = (
                f"{admin}=admin,bookings:read,bookings:write,checkin,events:read"
            )
            print(f"dev API key (all scopes): {admin}", flush=True)
        if not env.get("SLOTS_SCHEDULER_IN_PROCESS"):
            found["SLOTS_SCHEDULER_IN_PROCESS"] = "1"
        export(found)
        settings = load_settings()
        asyncio.run(_prepare(settings, demo=True))
        print(f"slots-service on http://{settings.host}:{settings.port}", flush=True)
        serve(settings)
    finally:
        servers.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slots-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_dev = sub.add_parser("dev", help="embedded Postgres + Valkey, demo data, API and jobs")
    p_dev.add_argument("--data", default=".devdata", help="where the embedded servers live")
    sub.add_parser("serve", help="the API only, against DATABASE_URL and REDIS_URL")
    sub.add_parser("scheduler", help="the scheduled jobs (one leader among replicas)")
    p_drain = sub.add_parser(
        "drain", help="preStop hook: /readyz of the serve on SLOTS_PORT answers 503, then wait"
    )
    p_drain.add_argument(
        "--seconds", type=float, default=None, help="how long to wait (SLOTS_DRAIN_SECONDS)"
    )
    sub.add_parser("migrate", help="apply SQL migrations under an advisory lock")
    p_seed = sub.add_parser("seed", help="migrate, load the demo catalog, open the horizon")
    p_seed.add_argument("--no-demo", action="store_true", help="skip the demo catalog")
    p_bench = sub.add_parser("bench", help="measure booking throughput and latency")
    p_bench.add_argument("--seconds", type=float, default=10.0)
    p_bench.add_argument("--concurrency", type=int, default=64)
    p_bench.add_argument("--data", default=".devdata/bench")
    p_bench.add_argument(
        "--limits",
        default="auto",
        help="the machine's ceilings: auto (measured now by bench's own code), a JSON file, none",
    )
    p_bench.add_argument(
        "--scenarios",
        default="book,book-sql,hot,flash,availability,book-no-redis,flash-w2,availability-w2,crowd",
        help="comma list of: book, book-sql (Postgres's side of book alone), hot, flash, "
        "availability, book-no-redis, flash-w2, availability-w2 (SLOTS_WORKERS=2), crowd; "
        "also book-w2, hot-w2, lottery",
    )
    p_bench.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p_bench.add_argument(
        "--profile",
        default="",
        help="a folder: run the API under py-spy, keep its folded stacks there, print a summary",
    )
    p_bench.add_argument("--flash-capacity", type=int, default=50, help="seats in the flash window")
    p_bench.add_argument("--crowd-seats", type=int, default=500, help="seats of the crowd's day")
    p_bench.add_argument(
        "--crowd-connections", type=int, default=2000, help="connections of the crowd"
    )
    p_bench.add_argument(
        "--crowd-attempts", type=int, default=20000, help="bookings the crowd attempts in all"
    )
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"slots-service: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format, settings.access_log)
    try:
        return _run(parser, args, settings)
    except ConfigError as exc:  # found once the servers answer (Redis's eviction policy)
        print(f"slots-service: {exc}", file=sys.stderr)
        return 2


async def _check_redis(settings: Settings) -> None:
    """Before any worker starts: refuse a Redis that may evict the gate's counters."""
    from .counters import Counters

    counters = Counters(settings.redis_url, settings.redis_timeout_s)
    try:
        await counters.start()
        await counters.check_eviction(settings.redis_allow_eviction)
    finally:
        await counters.close()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "dev":
        return dev(args)
    if args.command == "drain":
        from .drain import drain_command

        return drain_command(settings, args.seconds)
    if args.command == "bench":
        from .bench import run as run_bench

        return run_bench(args)
    if not settings.database_url:
        print("slots-service: DATABASE_URL is required", file=sys.stderr)
        return 2
    if args.command == "migrate":
        from .db import migrate

        applied = asyncio.run(migrate(settings.database_url))
        print(f"applied: {', '.join(applied) or 'nothing pending'}")
        return 0
    if not settings.pii_key:
        print("slots-service: SLOTS_PII_KEY is required", file=sys.stderr)
        return 2
    if args.command == "seed":
        asyncio.run(_prepare(settings, demo=not args.no_demo))
        return 0
    if args.command == "serve":
        asyncio.run(_check_redis(settings))
        serve(settings)
        return 0
    if args.command == "scheduler":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_scheduler(settings))
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
