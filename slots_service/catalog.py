"""Offices and services (the business types): admin writes and the in-process cache."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from . import errors
from .db import connection, queries
from .models import CancelCutoff, HoursRange, OfficeIn, OfficeOut, ServiceIn, ServiceOut

_CACHE_SECONDS = 5.0
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

    def out(self) -> OfficeOut:
        return OfficeOut(
            id=self.id,
            name=self.name,
            timezone=self.timezone,
            services=list(self.services),
            window_minutes=self.window_minutes,
            hours=self.hours,
        )


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    cancel_cutoff: CancelCutoff
    max_party_size: int
    requires_reference: bool

    def out(self) -> ServiceOut:
        return ServiceOut(
            id=self.id,
            name=self.name,
            cancel_cutoff=self.cancel_cutoff,
            max_party_size=self.max_party_size,
            requires_reference=self.requires_reference,
        )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.InvalidRequest(f"unknown timezone {name!r}") from None


class Catalog:
    """Offices and services are small and rarely change: every process keeps them in
    memory and reloads them a few seconds after a change anywhere (at once after its own).

    A stale copy is served while one background reload runs, so a crowd never waits on it and
    code inside a transaction never needs a second pooled connection for it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._offices: dict[str, Office] = {}
        self._services: dict[str, Service] = {}
        self._loaded_at = -1e9
        self._loaded = False  # False until the first load and after this process's writes
        self._lock = asyncio.Lock()
        self._reloading: asyncio.Task[None] | None = None

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < _CACHE_SECONDS:
            return
        if not self._loaded:
            async with self._lock:
                if not self._loaded:
                    await self._reload()
            return
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_quietly())

    async def _reload_quietly(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < _CACHE_SECONDS:
                return
            try:
                await self._reload()
            except Exception as exc:  # keep serving the copy we have; try again later
                log.warning("catalog reload failed: %s", type(exc).__qualname__)

    async def _reload(self) -> None:
        async with connection(self._pool) as conn:
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
            )
            for r in services
        }
        self._loaded_at = time.monotonic()
        self._loaded = True

    def invalidate(self) -> None:
        """After a write here: the next read waits for a reload."""
        self._loaded_at = -1e9
        self._loaded = False

    async def close(self) -> None:
        if self._reloading is not None:
            await self._reloading

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
        async with connection(self._pool) as conn:
            await conn.execute(
                queries["upsert_service"],
                service_id,
                body.name,
                msgspec.to_builtins(body.cancel_cutoff),
                body.max_party_size,
                body.requires_reference,
                now,
            )
        self.invalidate()
        return await self.service(service_id)

    async def put_office(self, office_id: str, body: OfficeIn, now: object) -> Office:
        zone(body.timezone)
        async with connection(self._pool) as conn:
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
            )
        self.invalidate()
        return await self.office(office_id)
