"""HTTP handlers of API.md: parse, authorise, call the rules, shape the answer. No rules here."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod
from litestar.openapi.spec import Example
from litestar.params import (
    FromQuery,
    HeaderParameter,
    JSONBody,
    Parameter,
    QueryParameter,
)

from . import (
    availability,
    booking,
    closures,
    draw,
    entries,
    errors,
    events,
    idempotency,
    jobs,
    leaving,
    people,
    waitlist,
)
from .auth import Caller, Route, caller_of, requires
from .clock import TestClock
from .models import (
    HHMM_PATTERN,
    ID_PATTERN,
    BookingIn,
    BookingList,
    BookingOut,
    CalendarIn,
    CalendarOut,
    CancelIn,
    CapacityIn,
    ClockIn,
    ClockOut,
    ClosureIn,
    ClosureOut,
    DrawPage,
    EntryIn,
    EntryOut,
    EventPage,
    IdentityIn,
    JobResult,
    OfficeAvailability,
    OfficeIn,
    OfficeOut,
    ReleaseOut,
    RescheduleIn,
    SearchIn,
    ServiceAvailability,
    ServiceIn,
    ServiceOut,
    Standing,
    UnblockIn,
    WaitlistIn,
    WaitlistOut,
    WaiveIn,
    WindowOut,
)
from .problems import Refusal, raises, refusal
from .render import instant
from .runtime import Runtime

_encode = msgspec.json.Encoder().encode

BOOKING_ID_PATTERN = r"^[A-Z0-9]{12,20}$"
CURSOR_PATTERN = r"^[0-9]{1,20}\.[0-9]{1,20}$"
# Path and query parameters, with the constraints the handlers enforce, so that the OpenAPI
# document says what is accepted.
OfficeIdPath = Annotated[
    str, Parameter(pattern=ID_PATTERN, examples=[Example(value="sz-exit-entry-foreigners")])
]
ServiceIdPath = Annotated[
    str, Parameter(pattern=ID_PATTERN, examples=[Example(value="residence-permit-first")])
]
BookingIdPath = Annotated[
    str, Parameter(pattern=BOOKING_ID_PATTERN, description="The appointment number")
]
DayPath = Annotated[
    date,
    Parameter(
        schema_extra={"format": "date"},
        description="Office-local date, YYYY-MM-DD",
    ),
]
StartPath = Annotated[str, Parameter(pattern=HHMM_PATTERN, description="Window start, HH:MM")]

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key", required=False, examples=[Example(value="2d4c9c1e-booking-1")]
    ),
]
EntryIdPath = Annotated[str, Parameter(pattern=BOOKING_ID_PATTERN, description="The entry's id")]
WaitlistIdPath = Annotated[
    str, Parameter(pattern=BOOKING_ID_PATTERN, description="The waitlist entry's id")
]

ADMIN = [requires("admin")]
READ = [requires("bookings:read")]
READ_OR_ADMIN = [requires("bookings:read", "admin")]
BOOKING_WRITERS = frozenset({"bookings:write"})
WRITE = [requires(*BOOKING_WRITERS)]


async def provide_runtime(state: State) -> Runtime:
    rt: Runtime = state.rt
    return rt


dependencies = {"rt": Provide(provide_runtime)}
RT = NamedDependency[Runtime]


# ---------------------------------------------------------------- administration


@put(
    "/v1/services/{service_id:str}",
    guards=ADMIN,
    status_code=200,
    tags=["admin"],
    responses=raises(),
)
async def put_service(rt: RT, service_id: ServiceIdPath, data: JSONBody[ServiceIn]) -> ServiceOut:
    """Create or replace a service (a business type)."""
    now = await rt.clock.now()
    service = await rt.catalog.put_service(service_id, data, now)
    return service.out()


@put(
    "/v1/offices/{office_id:str}", guards=ADMIN, status_code=200, tags=["admin"], responses=raises()
)
async def put_office(rt: RT, office_id: OfficeIdPath, data: JSONBody[OfficeIn]) -> OfficeOut:
    """Create or replace an office. Days already opened keep their windows."""
    now = await rt.clock.now()
    office = await rt.catalog.put_office(office_id, data, now)
    return office.out()


@get("/v1/offices", guards=READ_OR_ADMIN, tags=["catalog"], responses=raises())
async def list_offices(rt: RT) -> list[OfficeOut]:
    return [o.out() for o in await rt.catalog.offices()]


@get(
    "/v1/offices/{office_id:str}",
    guards=READ_OR_ADMIN,
    tags=["catalog"],
    responses=raises(errors.NotFound),
)
async def get_office(rt: RT, office_id: OfficeIdPath) -> OfficeOut:
    return (await rt.catalog.office(office_id)).out()


@get("/v1/services", guards=READ_OR_ADMIN, tags=["catalog"], responses=raises())
async def list_services(rt: RT) -> list[ServiceOut]:
    return [s.out() for s in await rt.catalog.services()]


@get(
    "/v1/services/{service_id:str}",
    guards=READ_OR_ADMIN,
    tags=["catalog"],
    responses=raises(errors.NotFound),
)
async def get_service(rt: RT, service_id: ServiceIdPath) -> ServiceOut:
    return (await rt.catalog.service(service_id)).out()


@get("/v1/calendar", guards=READ_OR_ADMIN, tags=["admin"], responses=raises())
async def list_calendar(rt: RT) -> list[CalendarOut]:
    return await closures.list_calendar(rt)


@put("/v1/calendar/{day:str}", guards=ADMIN, status_code=200, tags=["admin"], responses=raises())
async def put_calendar(rt: RT, day: DayPath, data: JSONBody[CalendarIn]) -> CalendarOut:
    """Mark a date for every office: a holiday (closed) or a make-up workday."""
    return await closures.put_calendar(rt, day, data, await rt.clock.now())


@delete(
    "/v1/calendar/{day:str}",
    guards=ADMIN,
    status_code=204,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def delete_calendar(rt: RT, day: DayPath) -> None:
    await closures.delete_calendar(rt, day, await rt.clock.now())


@put(
    "/v1/offices/{office_id:str}/closures/{day:str}",
    guards=ADMIN,
    status_code=200,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def put_closure(
    rt: RT, office_id: OfficeIdPath, day: DayPath, data: JSONBody[ClosureIn]
) -> ClosureOut:
    """Close one office for a day; its bookings there are cancelled by the office."""
    office = await rt.catalog.office(office_id)
    cancelled = await closures.put_closure(rt, office, day, data.reason, await rt.clock.now())
    return ClosureOut(
        office_id=office.id, date=day, reason=data.reason, cancelled_bookings=cancelled
    )


@delete(
    "/v1/offices/{office_id:str}/closures/{day:str}",
    guards=ADMIN,
    status_code=204,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def delete_closure(rt: RT, office_id: OfficeIdPath, day: DayPath) -> None:
    office = await rt.catalog.office(office_id)
    await closures.delete_closure(rt, office, day, await rt.clock.now())


@patch(
    "/v1/offices/{office_id:str}/windows/{day:str}/{start:str}",
    guards=ADMIN,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def patch_window(
    rt: RT,
    office_id: OfficeIdPath,
    day: DayPath,
    start: StartPath,
    data: JSONBody[CapacityIn],
) -> WindowOut:
    """Change one window's seats. Lowering below the seats booked cancels nobody."""
    office = await rt.catalog.office(office_id)
    return await closures.set_capacity(rt, office, day, start, data.capacity, await rt.clock.now())


@post(
    "/v1/admin/jobs/{job:str}",
    guards=ADMIN,
    status_code=200,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def run_job(
    rt: RT, job: Annotated[str, Parameter(schema_extra={"enum": sorted(jobs.JOBS)})]
) -> JobResult:
    """Run a scheduled job now and return its summary."""
    if job not in jobs.JOBS:
        raise errors.NotFound(f"no job {job!r}; jobs are {sorted(jobs.JOBS)}")
    return JobResult(job=job, result=await jobs.run_job(rt, job))


@post(
    "/v1/people/unblock",
    guards=ADMIN,
    status_code=200,
    tags=["people"],
    responses=raises(errors.NotFound),
)
async def unblock(rt: RT, data: JSONBody[UnblockIn]) -> Standing:
    """Lift a person's block (the counts before now no longer count towards a new one)."""
    now = await rt.clock.now()
    await people.unblock(rt, data.id_type, data.id_number, now)
    return await people.standing(rt, data.id_type, data.id_number, now)


def _test_clock(rt: RT) -> TestClock:
    if not isinstance(rt.clock, TestClock):
        raise errors.NotFound("the test clock is off (SLOTS_TEST_CLOCK)")
    return rt.clock


@get("/v1/admin/clock", guards=ADMIN, tags=["admin"], responses=raises(errors.NotFound))
async def get_clock(rt: RT) -> ClockOut:
    return ClockOut(now=instant(await _test_clock(rt).now(), rt.tz) or "", test_clock=True)


@put(
    "/v1/admin/clock",
    guards=ADMIN,
    status_code=200,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def put_clock(rt: RT, data: JSONBody[ClockIn]) -> ClockOut:
    """Set the deployment-wide test clock (only with SLOTS_TEST_CLOCK=1)."""
    clock = _test_clock(rt)
    await clock.set(data.now)
    return ClockOut(now=instant(data.now, rt.tz) or "", test_clock=True)


@delete(
    "/v1/admin/clock",
    guards=ADMIN,
    status_code=204,
    tags=["admin"],
    responses=raises(errors.NotFound),
)
async def delete_clock(rt: RT) -> None:
    await _test_clock(rt).reset()


# ---------------------------------------------------------------- availability


@get(
    "/v1/offices/{office_id:str}/availability",
    guards=READ,
    tags=["availability"],
    responses=raises(errors.NotFound, errors.NotBookable),
)
async def office_availability(
    rt: RT,
    office_id: OfficeIdPath,
    service: Annotated[str, QueryParameter(pattern=ID_PATTERN)],
    from_: Annotated[date | None, QueryParameter(name="from")] = None,
    to: FromQuery[date | None] = None,
    available_only: FromQuery[bool] = False,
) -> OfficeAvailability:
    """Open days in the horizon with their windows and seats remaining."""
    return await availability.of_office(rt, office_id, service, from_, to, available_only)


@get(
    "/v1/services/{service_id:str}/availability",
    guards=READ,
    tags=["availability"],
    responses=raises(errors.NotFound),
)
async def service_availability(
    rt: RT,
    service_id: ServiceIdPath,
    from_: Annotated[date | None, QueryParameter(name="from")] = None,
    to: FromQuery[date | None] = None,
) -> ServiceAvailability:
    """For each office offering the service, each open day's total seats remaining."""
    return await availability.of_service(rt, service_id, from_, to)


# ---------------------------------------------------------------- bookings


@Route(
    "/v1/bookings",
    http_method=HttpMethod.POST,
    guards=WRITE,
    tags=["bookings"],
    status_code=201,
    response_description="The booking",
    responses=raises(
        errors.NotFound,
        errors.PersonBlocked,
        errors.SlotFull,
        errors.ActiveBookingExists,
        errors.DailyLimitReached,
        errors.RebookCooldown,
        errors.PhoneBoundToOtherPerson,
        errors.IdempotencyInProgress,
        errors.IdempotencyKeyReused,
        errors.NotBookable,
        errors.RateLimited,
    ),
)
async def create_booking(
    request: Request[Any, Any, Any],
    data: JSONBody[BookingIn],
    idempotency_key: IdempotencyKey = None,
) -> Response[BookingOut]:
    """Book `party_size` seats in a window. Retries with the same Idempotency-Key replay."""
    # The runtime is read from the app's state, not resolved as a dependency (~5 % of a
    # sold-out booking). Most requests of this route never get here: fast_booking.py answers
    # them with the same make_booking, without the framework's per-request machinery.
    made = await make_booking(request.app.state.rt, caller_of(request), data, idempotency_key)
    return made if isinstance(made, Refusal) else Response(made)


async def make_booking(
    rt: Runtime, caller: Caller, data: BookingIn, idempotency_key: str | None
) -> BookingOut | Refusal:
    """What POST /v1/bookings answers once its caller is known and its body decoded: the
    booking, or its refusal answered as is (problems.Refusal), not raised through Litestar (the
    sold-out crowd's 409 is most of what this route answers)."""
    try:
        now = await rt.clock.now()
        return await booking.book(rt, data, now, await _keyed(rt, caller, data, idempotency_key))
    except errors.DomainError as exc:
        return refusal(exc)


async def _keyed(
    rt: Runtime, caller: Caller, data: object, idempotency_key: str | None
) -> idempotency.Keyed | None:
    """The caller's per-key rate limit, then the request's Idempotency-Key, if it has one."""
    if rt.settings.rate_limit_per_key_per_minute:
        wait = await rt.counters.over_limit(
            "key:" + caller.key_hash.hex(), rt.settings.rate_limit_per_key_per_minute, 60
        )
        if wait:
            raise errors.RateLimited(wait)
    if idempotency_key is None:
        return None
    return idempotency.Keyed(
        caller.key_hash,
        idempotency.validate_key(idempotency_key),
        idempotency.request_hash(_encode(data)),
        rt.settings.idempotency_period,
    )


@get(
    "/v1/bookings/{booking_id:str}",
    guards=READ,
    tags=["bookings"],
    responses=raises(errors.NotFound),
)
async def get_booking(rt: RT, booking_id: BookingIdPath) -> BookingOut:
    return await booking.get(rt, booking_id)


@post("/v1/bookings/search", guards=READ, status_code=200, tags=["bookings"], responses=raises())
async def search_bookings(rt: RT, data: JSONBody[SearchIn]) -> BookingList:
    """By identity or by reference; newest first, at most 50."""
    if data.reference is not None:
        items = await booking.search_by_reference(rt, data.reference)
    else:
        assert data.id_type is not None
        assert data.id_number is not None
        items = await booking.search_by_identity(rt, data.id_type, data.id_number)
    return BookingList(items=items)


@post(
    "/v1/bookings/{booking_id:str}/cancel",
    guards=WRITE,
    status_code=200,
    tags=["bookings"],
    responses=raises(errors.NotFound, errors.CancelCutoffPassed, errors.InvalidState),
)
async def cancel_booking(rt: RT, booking_id: BookingIdPath, data: JSONBody[CancelIn]) -> BookingOut:
    """Cancel; the seats are free at once. Cancelling again changes nothing."""
    return await leaving.cancel(rt, booking_id, data, await rt.clock.now())


@post(
    "/v1/bookings/{booking_id:str}/reschedule",
    guards=WRITE,
    status_code=200,
    tags=["bookings"],
    responses=raises(
        errors.NotFound,
        errors.InvalidState,
        errors.RescheduleLimitReached,
        errors.SlotFull,
        errors.NotBookable,
    ),
)
async def reschedule_booking(
    rt: RT, booking_id: BookingIdPath, data: JSONBody[RescheduleIn]
) -> BookingOut:
    """Move to another window of the same office and service, atomically; keeps the id.
    At most `SLOTS_MAX_RESCHEDULES` times per booking."""
    return await leaving.reschedule(rt, booking_id, data, await rt.clock.now())


@post(
    "/v1/bookings/{booking_id:str}/check-in",
    guards=[requires("checkin")],
    status_code=200,
    tags=["bookings"],
    responses=raises(errors.NotFound, errors.InvalidState),
)
async def check_in(rt: RT, booking_id: BookingIdPath) -> BookingOut:
    """At the office, from 60 minutes before the window until it ends; hands out a ticket."""
    return await booking.check_in(rt, booking_id, await rt.clock.now())


@post(
    "/v1/bookings/{booking_id:str}/waive-no-show",
    guards=ADMIN,
    status_code=200,
    tags=["bookings"],
    responses=raises(errors.NotFound, errors.InvalidState),
)
async def waive_no_show(rt: RT, booking_id: BookingIdPath, data: JSONBody[WaiveIn]) -> BookingOut:
    """Staff accept a person's proof for a no-show: it stays `no_show`, stops counting towards
    the no-show block (lifted at once when too few remain), `booking.no_show_waived`."""
    return await people.waive_no_show(rt, booking_id, data, await rt.clock.now())


@post("/v1/people/standing", guards=READ, status_code=200, tags=["people"], responses=raises())
async def standing(rt: RT, data: JSONBody[IdentityIn]) -> Standing:
    return await people.standing(rt, data.id_type, data.id_number, await rt.clock.now())


# ---------------------------------------------------------------- release by lottery (1.1)

_PERSON_RULES = (
    errors.PersonBlocked,
    errors.ActiveBookingExists,
    errors.RebookCooldown,
    errors.PhoneBoundToOtherPerson,
)
_KEYED = (errors.IdempotencyInProgress, errors.IdempotencyKeyReused, errors.RateLimited)


@post(
    "/v1/entries",
    guards=WRITE,
    tags=["lottery"],
    status_code=201,
    response_description="The entry",
    responses=raises(
        errors.NotFound,
        *_PERSON_RULES,
        errors.EntryExists,
        errors.EntriesClosed,
        errors.NotBookable,
        *_KEYED,
    ),
)
async def create_entry(
    rt: RT,
    request: Request[Any, Any, Any],
    data: JSONBody[EntryIn],
    idempotency_key: IdempotencyKey = None,
) -> EntryOut:
    """Enter the draw that releases a new day of an office in lottery mode."""
    now = await rt.clock.now()
    keyed = await _keyed(rt, caller_of(request), data, idempotency_key)
    return await entries.enter(rt, data, now, keyed)


@get("/v1/entries/{entry_id:str}", guards=READ, tags=["lottery"], responses=raises(errors.NotFound))
async def get_entry(rt: RT, entry_id: EntryIdPath) -> EntryOut:
    return await entries.get(rt, entry_id)


@post(
    "/v1/entries/{entry_id:str}/withdraw",
    guards=WRITE,
    status_code=200,
    tags=["lottery"],
    responses=raises(errors.NotFound, errors.InvalidState),
)
async def withdraw_entry(rt: RT, entry_id: EntryIdPath) -> EntryOut:
    """An entered entry leaves the draw; withdrawing again changes nothing."""
    return await entries.withdraw(rt, entry_id, await rt.clock.now())


@get(
    "/v1/offices/{office_id:str}/releases/{day:str}",
    guards=READ,
    tags=["lottery"],
    responses=raises(errors.NotFound),
)
async def get_release(rt: RT, office_id: OfficeIdPath, day: DayPath) -> ReleaseOut:
    """The draw's public record: its commitment before, its seed after."""
    return await draw.record(rt, office_id, day)


@get(
    "/v1/offices/{office_id:str}/releases/{day:str}/draw",
    guards=READ,
    tags=["lottery"],
    responses=raises(errors.NotFound, errors.DrawPending),
)
async def get_draw(
    rt: RT,
    office_id: OfficeIdPath,
    day: DayPath,
    after: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> DrawPage:
    """Every entry drawn, by rank, with its outcome: enough to verify the draw."""
    return await draw.listing(rt, office_id, day, after, limit)


# ---------------------------------------------------------------- waitlist (1.1)


@post(
    "/v1/waitlist",
    guards=WRITE,
    tags=["waitlist"],
    status_code=201,
    response_description="The waitlist entry",
    responses=raises(
        errors.NotFound,
        *_PERSON_RULES,
        errors.WaitlistEntryExists,
        errors.NotBookable,
        *_KEYED,
    ),
)
async def join_waitlist(
    rt: RT,
    request: Request[Any, Any, Any],
    data: JSONBody[WaitlistIn],
    idempotency_key: IdempotencyKey = None,
) -> WaitlistOut:
    """Wait for seats of a service at an office within a range of days (booked at once when
    a window there has seats)."""
    now = await rt.clock.now()
    keyed = await _keyed(rt, caller_of(request), data, idempotency_key)
    return await waitlist.join(rt, data, now, keyed)


@get(
    "/v1/waitlist/{waitlist_id:str}",
    guards=READ,
    tags=["waitlist"],
    responses=raises(errors.NotFound),
)
async def get_waitlist(rt: RT, waitlist_id: WaitlistIdPath) -> WaitlistOut:
    return await waitlist.get(rt, waitlist_id)


@post(
    "/v1/waitlist/{waitlist_id:str}/cancel",
    guards=WRITE,
    status_code=200,
    tags=["waitlist"],
    responses=raises(errors.NotFound, errors.InvalidState),
)
async def cancel_waitlist(rt: RT, waitlist_id: WaitlistIdPath) -> WaitlistOut:
    """A waiting entry stops waiting; cancelling again changes nothing."""
    return await waitlist.cancel(rt, waitlist_id, await rt.clock.now())


# ---------------------------------------------------------------- events


@get("/v1/events", guards=[requires("events:read")], tags=["events"], responses=raises())
async def list_events(
    rt: RT,
    after: Annotated[str | None, QueryParameter(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
) -> EventPage:
    """Events in commit order after a cursor; follow `next`."""
    return await events.page(rt, after, limit)


handlers = [
    put_service,
    put_office,
    list_offices,
    get_office,
    list_services,
    get_service,
    list_calendar,
    put_calendar,
    delete_calendar,
    put_closure,
    delete_closure,
    patch_window,
    run_job,
    unblock,
    get_clock,
    put_clock,
    delete_clock,
    office_availability,
    service_availability,
    create_booking,
    get_booking,
    search_bookings,
    cancel_booking,
    reschedule_booking,
    check_in,
    waive_no_show,
    standing,
    list_events,
    create_entry,
    get_entry,
    withdraw_entry,
    get_release,
    get_draw,
    join_waitlist,
    get_waitlist,
    cancel_waitlist,
]
