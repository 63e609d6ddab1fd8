"""The scheduled jobs, and the scheduler that runs them on one leader only.

Every job reads the service clock once, is idempotent, and may run at the same moment as its
twin started from `POST /v1/admin/jobs/{job}` (row locks with SKIP LOCKED keep them apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from functools import partial

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from . import draw, events, metrics, people, waitlist
from .db import connection, in_transaction, queries
from .horizon import days_between, horizon, local_today, next_to_open
from .logs import log_fault
from .runtime import Runtime
from .seats import Released, release
from .webhooks import deliver_webhooks

log = logging.getLogger(__name__)
LEADER_LOCK = 0x510752
_BATCH = 200

Job = Callable[[Runtime, datetime], Awaitable[dict[str, int]]]


# The day about to enter the horizon is planned, and its seats counted in Redis, this long
# before it opens, so the crowd waiting for it meets a ready gate.
PREPARE_AHEAD = timedelta(minutes=30)
DRAW_EVERY_S = 2


async def open_horizon(rt: Runtime, now: datetime) -> dict[str, int]:
    """Plan every office's horizon days, and the next one shortly before it opens."""
    days = windows = 0
    for office in await rt.catalog.offices():
        first, last = horizon(now, office.tz, rt.settings)
        todo = days_between(first, last)
        upcoming, opens = next_to_open(now, office.tz, rt.settings)
        if opens - now <= PREPARE_AHEAD:
            todo.append(upcoming)
        opened, created = await rt.days.ensure_opened(office, todo, now)
        days += opened
        windows += created
    return {"days_opened": days, "windows_created": windows}


async def sweep_no_shows(rt: Runtime, now: datetime) -> dict[str, int]:
    """`booked` 30 minutes after the window ended: a no-show, seats freed, maybe a block."""
    cutoff = now - timedelta(minutes=rt.settings.no_show_grace_minutes)
    marked = blocked = 0
    while True:

        async def work(conn: asyncpg.Connection) -> tuple[int, int, list[Released]]:
            rows = await conn.fetch(queries["due_no_shows"], cutoff, _BATCH)
            newly_blocked = 0
            released = []
            for row in rows:
                await conn.execute(queries["set_no_show"], row["id"], now)
                released.append(await release(conn, row))
                out = await events.emit(conn, rt, "booking.no_show", row["id"], now)
                until = await people.block_after_no_shows(conn, row["person_id"], now, rt.settings)
                if until is not None:
                    await events.emit_blocked(conn, rt, out, until, now)
                    newly_blocked += 1
            return len(rows), newly_blocked, released

        count, newly, released = await in_transaction(rt.pool, work)
        await rt.seats.give_back(released)
        marked += count
        blocked += newly
        if count < _BATCH:
            return {"no_shows": marked, "people_blocked": blocked}


async def reconcile(rt: Runtime, now: datetime) -> dict[str, int]:
    """Rewrite Redis counters from Postgres for every opened day from today on."""
    await rt.counters.ping()
    oldest = min((local_today(now, o.tz) for o in await rt.catalog.offices()), default=None)
    if oldest is None:
        return {"days": 0, "windows_corrected": 0}
    async with connection(rt.pool) as conn:
        days = await conn.fetch(queries["open_days_from"], oldest)
    corrected = 0
    for row in days:
        corrected += await rt.seats.fill(row["office_id"], row["day"], replace=True)
    metrics.reconcile_corrected.inc(corrected)
    return {"days": len(days), "windows_corrected": corrected}


async def send_reminders(rt: Runtime, now: datetime) -> dict[str, int]:
    """From `reminder_time` local on the day before, one `booking.reminder` per booking."""
    sent = 0
    for office in await rt.catalog.offices():
        local = now.astimezone(office.tz)
        if local.strftime("%H:%M") < rt.settings.reminder_time:
            continue
        tomorrow = local.date() + timedelta(days=1)
        work = partial(_remind, rt=rt, office_id=office.id, day=tomorrow, now=now)
        sent += await in_transaction(rt.pool, work)
    return {"reminders": sent}


async def purge(rt: Runtime, now: datetime) -> dict[str, int]:
    """Bookings and events 180 days after their window; idempotency keys after 24 hours."""
    cutoff = local_today(now, rt.tz) - timedelta(days=rt.settings.retention_days)
    keys_cutoff = now - timedelta(hours=rt.settings.idempotency_hours)
    result: dict[str, int] = {}

    async def work(conn: asyncpg.Connection) -> None:
        for name, query, arg in (
            ("events", "purge_events", cutoff),
            ("bookings", "purge_bookings", cutoff),
            ("windows", "purge_windows", cutoff),
            ("opened_days", "purge_opened_days", cutoff),
            ("tickets", "purge_tickets", cutoff),
            ("entries", "purge_entries", cutoff),
            ("waitlist", "purge_waitlist", cutoff),
            ("idempotency_keys", "purge_idempotency", keys_cutoff),
        ):
            status = await conn.execute(queries[query], arg)
            result[name] = int(status.split()[-1])
        status = await conn.execute(
            queries["purge_people"], now, now - timedelta(days=rt.settings.retention_days)
        )
        result["people"] = int(status.split()[-1])

    await in_transaction(rt.pool, work)
    return result


async def _remind(
    conn: asyncpg.Connection, rt: Runtime, office_id: str, day: date, now: datetime
) -> int:
    ids = [r["id"] for r in await conn.fetch(queries["due_reminders"], [day], office_id)]
    for booking_id in ids:
        await events.emit(conn, rt, "booking.reminder", booking_id, now)
    await conn.execute(queries["set_reminded"], ids, now)
    return len(ids)


JOBS: dict[str, Job] = {
    "open-horizon": open_horizon,
    "sweep-no-shows": sweep_no_shows,
    "reconcile": reconcile,
    "send-reminders": send_reminders,
    "purge": purge,
    "draw-releases": draw.draw_releases,
    "expire-waitlist": waitlist.expire,
}


async def run_job(rt: Runtime, name: str) -> dict[str, int]:
    job = JOBS[name]
    now = await rt.clock.now()
    started = time.perf_counter()
    try:
        result = await job(rt, now)
    except Exception as exc:
        metrics.job_duration.labels(name).observe(time.perf_counter() - started)
        metrics.job_runs.labels(name, "error").inc()
        log_fault(log, f"job {name} failed", exc)
        raise
    metrics.job_duration.labels(name).observe(time.perf_counter() - started)
    metrics.job_runs.labels(name, "ok").inc()
    metrics.job_last_success.labels(name).set_to_current_time()
    # A run that found nothing to do (draw-releases runs every 2 s) is not worth a line.
    log.log(logging.INFO if any(result.values()) else logging.DEBUG, "job %s: %s", name, result)
    return result


class Scheduler:
    """APScheduler on the process holding a Postgres advisory lock; the others wait.

    The lock lives on a dedicated connection: if that connection dies, Postgres releases the
    lock and another replica takes over within one poll interval.
    """

    def __init__(self, rt: Runtime, poll_s: float = 5.0) -> None:
        self._rt = rt
        self._poll_s = poll_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def _schedule(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        for name, seconds in (
            ("open-horizon", 60),
            ("sweep-no-shows", 60),
            ("reconcile", 60),
            ("send-reminders", 60),
            ("purge", 3600),
            # a draw runs within this of its instant (API 1.1: within 5 s)
            ("draw-releases", DRAW_EVERY_S),
            ("expire-waitlist", 60),
        ):
            scheduler.add_job(self._run_quietly, "interval", seconds=seconds, args=[name], id=name)
        return scheduler

    async def _run_quietly(self, name: str) -> None:
        try:
            await run_job(self._rt, name)
        except Exception:  # logged and counted in run_job; the next run tries again
            return

    async def _run(self) -> None:
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._rt.settings.database_url)
                if await conn.fetchval(queries["try_lock"], LEADER_LOCK):
                    await self._lead(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("scheduler: lost the database (%s)", type(exc).__name__)
            finally:
                metrics.scheduler_leader.set(0)
                if conn is not None:
                    conn.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll_s)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        log.info("scheduler: this process is the leader")
        metrics.scheduler_leader.set(1)
        self.leading = True
        for name in ("open-horizon", "reconcile", "draw-releases"):  # at once, then on interval
            await self._run_quietly(name)
        scheduler = self._schedule()
        scheduler.start()
        webhook: asyncio.Task[None] | None = None
        if self._rt.settings.webhook_url:
            webhook = asyncio.get_running_loop().create_task(deliver_webhooks(self._rt, self._stop))
        try:
            while not self._stop.is_set():
                await conn.fetchval(queries["ping"])  # still holding the lock?
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._poll_s)
        finally:
            self.leading = False
            scheduler.shutdown(wait=False)
            if webhook is not None:
                webhook.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await webhook
