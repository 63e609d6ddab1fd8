"""A party's members (API 1.1): named people besides the person, each held to the person rules,
kept like the person (HMAC and masked number), decided with the booking in one transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple, Protocol

import asyncpg
from msgspec import UNSET, UnsetType

from . import errors, people
from .config import Settings
from .db import queries
from .models import MemberIn, PersonIn, PersonOut


class Member(NamedTuple):
    id_hmac: bytes
    id_type: str
    id_masked: str
    name: str

    def out(self) -> PersonOut:
        return PersonOut(id_type=self.id_type, id_number_masked=self.id_masked, name=self.name)


class Party(Protocol):
    """A request for a party: a booking, an entry into a draw, a waiting entry."""

    @property
    def person(self) -> PersonIn: ...
    @property
    def party_size(self) -> int: ...
    @property
    def members(self) -> list[MemberIn] | UnsetType: ...


def members_of(settings: Settings, req: Party) -> tuple[Member, ...]:
    """The request's members, checked against the party (the rules that need no database)."""
    given = [] if req.members is UNSET else req.members
    others = req.party_size - 1
    if req.members is not UNSET and len(given) != others:
        raise errors.NotBookable(f"members name the other {others} people of the party")
    if settings.party_members_required and others and not given:
        raise errors.NotBookable(f"a party of {req.party_size} names its members")
    seen = {(req.person.id_type, req.person.id_number)}
    for member in given:
        identity = (member.id_type, member.id_number)
        if identity in seen:
            raise errors.NotBookable("members are distinct people, none of them the person")
        seen.add(identity)
    key = settings.pii_key.get()
    return tuple(
        Member(
            people.identity_hmac(key, m.id_type, m.id_number),
            m.id_type,
            people.mask(m.id_number),
            m.name,
        )
        for m in given
    )


async def hold(
    conn: asyncpg.Connection,
    settings: Settings,
    person: Member,
    members: tuple[Member, ...],
    service_id: str,
    made_on: date,
    now: datetime,
) -> asyncpg.Record | None:
    """Lock every identity of the party to the commit, then the first member a person rule
    refuses (its verdict row), or None. Runs in the booking's transaction."""
    everyone = sorted((person, *members))
    await conn.execute(
        queries["lock_party"],
        [m.id_hmac for m in everyone],
        [m.id_type for m in everyone],
        [m.id_masked for m in everyone],
        now,
    )
    found: asyncpg.Record | None = await conn.fetchrow(
        queries["party_verdict"],
        [m.id_hmac for m in members],
        service_id,
        made_on,
        settings.bookings_per_day,
        settings.active_bookings_per_service,
        now,
        settings.rebook_cooldown_minutes,
    )
    return found


async def record(conn: asyncpg.Connection, booking_id: str, members: tuple[Member, ...]) -> None:
    await conn.execute(
        queries["insert_members"],
        booking_id,
        [m.id_hmac for m in members],
        [m.id_type for m in members],
        [m.id_masked for m in members],
        [m.name for m in members],
    )


def stored(members: tuple[Member, ...]) -> list[dict[str, str]]:
    """Members as an entry keeps them until its booking is made (jsonb): HMAC, never a number."""
    return [
        {"id_hmac": m.id_hmac.hex(), "id_type": m.id_type, "id_masked": m.id_masked, "name": m.name}
        for m in members
    ]


def from_stored(rows: list[dict[str, str]]) -> tuple[Member, ...]:
    return tuple(
        Member(bytes.fromhex(r["id_hmac"]), r["id_type"], r["id_masked"], r["name"]) for r in rows
    )
