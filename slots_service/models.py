"""msgspec Structs at the HTTP boundary: requests in (strict), responses out."""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field
from msgspec.structs import force_setattr

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
OfficeId = Annotated[str, Meta(pattern=ID_PATTERN)]
ServiceId = Annotated[str, Meta(pattern=ID_PATTERN)]
HHMM = Annotated[str, Meta(pattern=HHMM_PATTERN, examples=["09:00"])]
Phone = Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+8613926150414"])]
# Text a person could type (API conventions): no control characters but tab and newline.
# Postgres cannot store NUL, and screens, SMS and logs choke on the rest. Unpaired surrogates
# never get this far: the JSON decoder refuses them (400) before any pattern is tried.
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
Text = Annotated[str, Meta(max_length=500, pattern=TEXT_PATTERN)]
Notice = Annotated[str, Meta(min_length=1, max_length=4000, pattern=TEXT_PATTERN)]
Document = Annotated[str, Meta(min_length=1, max_length=200, pattern=TEXT_PATTERN)]
Timezone = Annotated[
    str,
    Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$", examples=["Asia/Shanghai"]),
]
# 4-32 letters or digits once spaces are stripped and letters upper-cased.
IdNumber = Annotated[str, Meta(pattern=r"^ *(?:[A-Za-z0-9] *){4,32}$", examples=["M92839408"])]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
IdType = Literal["passport", "cn_id", "hk_mo_permit", "tw_permit", "foreign_permanent_id"]
Channel = Literal["web", "app", "phone", "counter"]
Capacity = Annotated[int, Meta(ge=0, le=10_000)]
PartySize = Annotated[int, Meta(ge=1, le=100)]
Reference = Annotated[str, Meta(min_length=1, max_length=64, pattern=TEXT_PATTERN)]
Metadata = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=64, pattern=TEXT_PATTERN)], Text],
    Meta(max_length=16),
]

WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID_NUMBER = re.compile(r"^[A-Z0-9]{4,32}$")
_SPACES = re.compile(" +")


def normalise_id_number(raw: str) -> str:
    """Upper-case, strip spaces, then 4-32 of [A-Z0-9]; ValueError otherwise."""
    value = _SPACES.sub("", raw).upper()
    if not _ID_NUMBER.match(value):
        raise ValueError("id_number must be 4-32 letters or digits")
    return value


def minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:5])


class Request(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every request body: unknown fields are rejected."""


class Response(Struct, kw_only=True):
    """Base of every response body."""


# ---------------------------------------------------------------- administration


class DayBefore(Request, frozen=True, tag_field="kind", tag="day_before"):
    time: HHMM


class HoursBefore(Request, frozen=True, tag_field="kind", tag="hours_before"):
    hours: Annotated[int, Meta(ge=0, le=24 * 30)]


class NoCutoff(Request, frozen=True, tag_field="kind", tag="none"):
    pass


CancelCutoff = DayBefore | HoursBefore | NoCutoff


class ServiceIn(Request, frozen=True):
    name: Name
    cancel_cutoff: CancelCutoff = field(default_factory=lambda: DayBefore(time="18:00"))
    max_party_size: Annotated[int, Meta(ge=1, le=100)] = 1
    requires_reference: bool = False
    # API 1.1: the business notice (业务须知) a person reads before booking, what to bring, and
    # whether a booking must carry `notice_accepted: true`.
    notice: Notice | None = None
    documents: Annotated[list[Document], Meta(max_length=20)] = field(default_factory=list)
    notice_required: bool = False

    def __post_init__(self) -> None:
        if self.notice_required and self.notice is None:
            raise ValueError("notice_required needs a notice")


class ServiceOut(Response):
    id: str
    name: str
    cancel_cutoff: CancelCutoff
    max_party_size: int
    requires_reference: bool
    notice: str | None = None
    documents: list[str] = field(default_factory=list)
    notice_required: bool = False


class HoursRange(Request, frozen=True):
    start: HHMM
    end: HHMM
    capacity: Capacity

    def __post_init__(self) -> None:
        if minutes(self.end) <= minutes(self.start):
            raise ValueError(f"opening range {self.start}-{self.end} must end after it starts")


class FirstCome(Request, frozen=True, tag_field="mode", tag="first_come"):
    """New days are bookable first come, first served from the instant they open."""


class Lottery(Request, frozen=True, tag_field="mode", tag="lottery"):
    """New days are released by a draw among the entries taken from `entries_open` on the
    evening before they open (API 1.1, "Fair release")."""

    entries_open: HHMM = "18:00"
    max_choices: Annotated[int, Meta(ge=1, le=48)] = 3


Release = FirstCome | Lottery


class OfficeIn(Request, frozen=True):
    name: Name
    timezone: Timezone
    services: list[ServiceId]
    hours: dict[Weekday, list[HoursRange]]
    window_minutes: Annotated[int, Meta(ge=5, le=720)] = 30
    release: Release = field(default_factory=FirstCome)  # API 1.1

    def __post_init__(self) -> None:
        for day, ranges in self.hours.items():
            spans = sorted((minutes(r.start), minutes(r.end)) for r in ranges)
            for (_, end), (start, _) in itertools.pairwise(spans):
                if start < end:
                    raise ValueError(f"opening ranges overlap on {day}")
            for start, end in spans:
                if (end - start) % self.window_minutes:
                    raise ValueError(
                        f"range on {day} is not a whole number of {self.window_minutes}-minute"
                        " windows"
                    )
        if len(set(self.services)) != len(self.services):
            raise ValueError("services are listed twice")


class OfficeOut(Response):
    id: str
    name: str
    timezone: str
    services: list[str]
    window_minutes: int
    hours: dict[str, list[HoursRange]]
    release: Release = field(default_factory=FirstCome)


class Holiday(Request, frozen=True, tag_field="kind", tag="holiday"):
    name: Text = ""


class Workday(Request, frozen=True, tag_field="kind", tag="workday"):
    as_: Weekday = field(name="as")
    name: Text = ""


CalendarIn = Holiday | Workday


class CalendarOut(Response):
    date: date
    kind: str
    name: str
    as_: Weekday | None = field(default=None, name="as")


class ClosureIn(Request, frozen=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500, pattern=TEXT_PATTERN)]


class ClosureOut(Response):
    office_id: str
    date: date
    reason: str
    cancelled_bookings: int


class CapacityIn(Request, frozen=True):
    capacity: Capacity


# The test clock's range: far enough for any test of dates, near enough that a horizon, a
# retention period or a block never leaves the calendar.
CLOCK_YEARS = (1970, 8999)
CLOCK_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3})-"


class ClockIn(Request, frozen=True):
    now: datetime

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("now must carry a UTC offset")
        first, last = CLOCK_YEARS
        if not first <= self.now.year <= last:
            raise ValueError(f"now must lie in the years {first} to {last}")


class ClockOut(Response):
    now: str
    test_clock: bool


# ---------------------------------------------------------------- people


class IdentityIn(Request, frozen=True):
    id_type: IdType
    id_number: IdNumber

    def __post_init__(self) -> None:
        force_setattr(self, "id_number", normalise_id_number(self.id_number))


class PersonIn(IdentityIn, frozen=True):
    name: Name
    phone: Phone


class MemberIn(IdentityIn, frozen=True):
    """Another person of a party (API 1.1): held to the person rules, no phone."""

    name: Name


class UnblockIn(IdentityIn, frozen=True):
    reason: Text = ""


class PersonOut(Response):
    id_type: str
    id_number_masked: str
    name: str


# ---------------------------------------------------------------- bookings


class BookingIn(Request, frozen=True):
    office_id: OfficeId
    service_id: ServiceId
    date: date
    start: HHMM
    person: PersonIn
    party_size: PartySize = 1
    channel: Channel = "web"
    reference: Reference | None = None
    metadata: Metadata = field(default_factory=dict)
    # API 1.1. Unset when not sent, so that a body of an earlier release hashes as it did then
    # (an Idempotency-Key retried across a deploy still matches its first request).
    notice_accepted: bool | UnsetType = UNSET
    members: Annotated[list[MemberIn], Meta(max_length=99)] | UnsetType = UNSET


class BookingOut(Response):
    id: str
    status: str
    office_id: str
    service_id: str
    date: str
    start: str
    end: str
    starts_at: str
    ends_at: str
    party_size: int
    person: PersonOut
    channel: str
    reference: str | None
    metadata: dict[str, str]
    created_at: str
    cancel_deadline: str | None
    cancelled_at: str | None
    cancelled_by: str | None
    cancel_reason: str | None
    checked_in_at: str | None
    ticket: str | None
    # API 1.1; the defaults read a booking kept by an earlier release (an idempotent replay).
    reschedules: int = 0
    no_show_waived_at: str | None = None
    members: list[PersonOut] = field(default_factory=list)


class CancelIn(Request, frozen=True):
    by: Literal["person", "office"]
    reason: Text = ""


class WaiveIn(Request, frozen=True):
    reason: Text = ""


class RescheduleIn(Request, frozen=True):
    date: date
    start: HHMM


class SearchIn(Request, frozen=True):
    id_type: IdType | None = None
    id_number: IdNumber | None = None
    reference: Reference | None = None

    def __post_init__(self) -> None:
        by_identity = self.id_type is not None or self.id_number is not None
        if by_identity == (self.reference is not None):
            raise ValueError("search by {id_type, id_number} or by {reference}")
        if by_identity:
            if self.id_type is None or self.id_number is None:
                raise ValueError("id_type and id_number go together")
            force_setattr(self, "id_number", normalise_id_number(self.id_number))


# ---------------------------------------------------------------- release by lottery (1.1)


class EntryIn(Request, frozen=True):
    office_id: OfficeId
    service_id: ServiceId
    date: date
    choices: Annotated[list[HHMM], Meta(max_length=48)]
    person: PersonIn
    party_size: PartySize = 1
    channel: Channel = "web"
    reference: Reference | None = None
    metadata: Metadata = field(default_factory=dict)
    notice_accepted: bool | UnsetType = UNSET
    members: Annotated[list[MemberIn], Meta(max_length=99)] | UnsetType = UNSET
    waitlist: bool = False


class EntryOut(Response):
    id: str
    status: str
    office_id: str
    service_id: str
    date: str
    choices: list[str]
    party_size: int
    person: PersonOut
    members: list[PersonOut]
    channel: str
    reference: str | None
    metadata: dict[str, str]
    waitlist: bool
    created_at: str
    draw_at: str
    booking_id: str | None
    lost_reason: str | None
    waitlist_id: str | None


class ReleaseOut(Response):
    office_id: str
    date: str
    mode: str
    entries_open_at: str
    draw_at: str
    status: Literal["scheduled", "taking_entries", "drawing", "drawn"]
    commitment: str | None
    seed: str | None
    entries: int
    won: int
    lost: int


class DrawItem(Response):
    rank: int
    entry_id: str
    status: str
    start: str | None


class DrawPage(Response):
    items: list[DrawItem]
    next: int | None


# ---------------------------------------------------------------- waitlist (1.1)


class WaitlistIn(Request, frozen=True):
    office_id: OfficeId
    service_id: ServiceId
    from_: date = field(name="from")
    to: date
    person: PersonIn
    party_size: PartySize = 1
    channel: Channel = "web"
    reference: Reference | None = None
    metadata: Metadata = field(default_factory=dict)
    notice_accepted: bool | UnsetType = UNSET
    members: Annotated[list[MemberIn], Meta(max_length=99)] | UnsetType = UNSET


class WaitlistOut(Response):
    id: str
    status: str
    office_id: str
    service_id: str
    from_: str = field(name="from")
    to: str
    party_size: int
    person: PersonOut
    members: list[PersonOut]
    channel: str
    created_at: str
    booking_id: str | None


class BookingList(Response):
    items: list[BookingOut]


class Standing(Response):
    no_shows: int
    cancellations: int
    blocked_until: str | None
    active_bookings: list[BookingOut]


# ---------------------------------------------------------------- availability


class WindowOut(Response):
    start: str
    end: str
    capacity: int
    remaining: int


class DayOut(Response):
    date: str
    windows: list[WindowOut]


class OfficeAvailability(Response):
    office_id: str
    service_id: str
    timezone: str
    days: list[DayOut]


class OfficeDayTotal(Response):
    date: str
    remaining: int


class ServiceOfficeAvailability(Response):
    office_id: str
    name: str
    timezone: str
    days: list[OfficeDayTotal]


class ServiceAvailability(Response):
    service_id: str
    offices: list[ServiceOfficeAvailability]


# ---------------------------------------------------------------- events, jobs, health


class Event(Response):
    id: str
    type: str
    occurred_at: str
    booking: dict[str, object] | None = None
    person: dict[str, object] | None = None
    # API 1.1: carried by entry.* and waitlist.* events only (absent from the others).
    entry: dict[str, object] | UnsetType = UNSET
    waitlist: dict[str, object] | UnsetType = UNSET


class EventPage(Response):
    items: list[Event]
    next: str | None


class Problem(Response):
    """RFC 9457 problem details; `code` is what callers branch on. Some codes add members
    (`booking_id`, `blocked_until`, `cancel_deadline`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class JobResult(Response):
    job: str
    result: dict[str, int]


class Ready(Response):
    postgres: str
    redis: str
