"""The booking rules that need no server: cancel deadlines, what is bookable, the statement's
verdicts as errors, the statement's parameters, refusals kept and replayed, errors as HTTP."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from slots_service import errors, idempotency, problems
from slots_service.book_params import BookParams
from slots_service.booking import cancel_deadline, check_bookable, refusal
from slots_service.catalog import Office, Service
from slots_service.config import load_settings
from slots_service.models import (
    BookingOut,
    CancelCutoff,
    DayBefore,
    HoursBefore,
    HoursRange,
    NoCutoff,
    PersonOut,
)

SZ = ZoneInfo("Asia/Shanghai")
SETTINGS = load_settings({})
OFFICE = Office(
    id="sz-exit-entry-foreigners",
    name="x",
    timezone="Asia/Shanghai",
    tz=SZ,
    services=("residence-permit-first",),
    window_minutes=30,
    hours={"mon": [HoursRange(start="09:00", end="12:00", capacity=3)]},
)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SZ)  # a Monday; the horizon is 11-24 .. 12-07


EVENING_BEFORE = DayBefore(time="18:00")


def service(cutoff: CancelCutoff = EVENING_BEFORE, party: int = 5) -> Service:
    return Service(
        id="residence-permit-first",
        name="x",
        cancel_cutoff=cutoff,
        max_party_size=party,
        requires_reference=False,
    )


@pytest.mark.parametrize(
    ("cutoff", "expected"),
    [
        (EVENING_BEFORE, datetime(2026, 11, 24, 18, 0, tzinfo=SZ)),
        (HoursBefore(hours=2), datetime(2026, 11, 25, 7, 0, tzinfo=SZ)),
        (HoursBefore(hours=0), datetime(2026, 11, 25, 9, 0, tzinfo=SZ)),
        (NoCutoff(), None),
    ],
)
def test_cancel_deadline(cutoff: CancelCutoff, expected: datetime | None) -> None:
    starts_at = datetime(2026, 11, 25, 9, 0, tzinfo=SZ)
    assert cancel_deadline(service(cutoff), date(2026, 11, 25), starts_at, OFFICE) == expected


def test_a_window_inside_the_horizon_is_bookable() -> None:
    found = check_bookable(SETTINGS, OFFICE, service(), date(2026, 11, 25), time(9), 1, NOW)
    assert found == datetime(2026, 11, 25, 9, 0, tzinfo=SZ)


@pytest.mark.parametrize(
    ("day", "start", "party", "why"),
    [
        (date(2026, 11, 23), time(9), 1, "outside the booking horizon"),  # today
        (date(2026, 12, 8), time(9), 1, "outside the booking horizon"),  # day 15
        (date(2026, 11, 25), time(9), 6, "party_size is at most 5"),
    ],
)
def test_what_is_not_bookable(day: date, start: time, party: int, why: str) -> None:
    with pytest.raises(errors.NotBookable, match=why):
        check_bookable(SETTINGS, OFFICE, service(), day, start, party, NOW)


def test_a_service_not_offered_there_is_not_bookable() -> None:
    other = Service(
        id="passport", name="x", cancel_cutoff=NoCutoff(), max_party_size=1,
        requires_reference=False,
    )  # fmt: skip
    with pytest.raises(errors.NotBookable, match="not offered"):
        check_bookable(SETTINGS, OFFICE, other, date(2026, 11, 25), time(9), 1, NOW)


@pytest.mark.parametrize(
    ("verdict", "error", "extra"),
    [
        ("closed", errors.NotBookable, {}),
        ("blocked", errors.PersonBlocked, {"blocked_until": "2027-05-22T09:00:00+08:00"}),
        ("phone", errors.PhoneBoundToOtherPerson, {}),
        ("active", errors.ActiveBookingExists, {"booking_id": "7KQ2M9XH4T1B"}),
        ("daily", errors.DailyLimitReached, {}),
        ("full", errors.SlotFull, {}),
        ("claim_lost", errors.IdempotencyInProgress, {}),
    ],
)
def test_the_statements_verdicts_are_the_callers_errors(
    verdict: str, error: type[errors.DomainError], extra: dict[str, str]
) -> None:
    until = datetime(2027, 5, 22, 1, 0, tzinfo=ZoneInfo("UTC"))
    found = refusal(verdict, until, "7KQ2M9XH4T1B", OFFICE)
    assert type(found) is error
    assert found.extra == extra


def test_a_cooldown_verdict_names_when_to_retry_in_the_office_zone() -> None:
    retry_at = datetime(2026, 11, 23, 4, 0, tzinfo=ZoneInfo("UTC"))
    found = refusal("cooldown", None, None, OFFICE, retry_at)
    assert type(found) is errors.RebookCooldown
    assert found.extra == {"retry_at": "2026-11-23T12:00:00+08:00"}
    assert problems.KINDS[errors.RebookCooldown].status == 409


def test_the_book_statement_reads_every_value_by_its_params_name() -> None:
    sql = (Path(__file__).resolve().parents[2] / "slots_service/sql/queries.sql").read_text()
    header = sql[sql.index("-- name: book\n") : sql.index("WITH r AS")]
    documented = set(re.findall(r"[a-z_]+", header))
    record = sql[sql.index("jsonb_to_record(j.booking) AS (") : sql.index("), w AS")]
    columns = re.findall(r"([a-z_]+) (?:text|date|time|int|jsonb|timestamptz|bool)\b", record)
    assert columns == list(BookParams.__struct_fields__)
    assert set(BookParams.__struct_fields__) <= documented
    body = sql[sql.index("WITH r AS") : sql.index("-- name: active_booking_of")]
    assert set(re.findall(r"\$(\d+)", body)) == {"1"}


@pytest.mark.parametrize(
    "error",
    [
        errors.SlotFull(),
        errors.ActiveBookingExists("7KQ2M9XH4T1B"),
        errors.PersonBlocked("2027-05-22T09:00:00+08:00"),
        errors.NotBookable("the window has already started"),
        errors.CancelCutoffPassed("2026-11-24T18:00:00+08:00"),
    ],
)
def test_a_kept_refusal_is_raised_again_as_it_was(error: errors.DomainError) -> None:
    assert idempotency.kept(error)
    stored = idempotency._refusal(error)
    with pytest.raises(type(error)) as again:
        idempotency.replay(error.code, stored)
    assert (again.value.detail, again.value.extra) == (error.detail, error.extra)
    assert problems.problem_body(again.value) == problems.problem_body(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidRequest(),
        errors.RateLimited(3),
        errors.Unavailable(),
        errors.IdempotencyInProgress(2),
        errors.IdempotencyKeyReused(),
    ],
)
def test_answers_about_the_moment_are_not_kept(error: errors.DomainError) -> None:
    assert not idempotency.kept(error)


def test_a_kept_booking_is_the_same_booking_again() -> None:
    out = BookingOut(
        id="7KQ2M9XH4T1B", status="booked", office_id="o", service_id="s", date="2026-11-25",
        start="09:00", end="09:30", starts_at="2026-11-25T09:00:00+08:00",
        ends_at="2026-11-25T09:30:00+08:00", party_size=1,
        person=PersonOut(id_type="passport", id_number_masked="M9****408", name="LEE JIWON"),
        channel="web", reference=None, metadata={"a": "b"}, created_at="2026-11-23T10:00:00+08:00",
        cancel_deadline=None, cancelled_at=None, cancelled_by=None, cancel_reason=None,
        checked_in_at=None, ticket=None,
    )  # fmt: skip
    body = msgspec.json.encode(out)
    again = idempotency.replay(idempotency.BOOKED, body)
    assert msgspec.json.encode(again) == body


def test_every_error_has_one_status_and_the_headers_it_owes() -> None:
    assert {cls: problems.KINDS[cls].status for cls in errors.ALL}  # every class mapped
    assert problems.headers(errors.RateLimited(7)) == {"Retry-After": "7"}
    assert problems.headers(errors.IdempotencyInProgress(0)) == {"Retry-After": "1"}
    assert problems.headers(errors.Unavailable()) == {"Retry-After": "2"}
    assert problems.headers(errors.Unauthorized()) == {"WWW-Authenticate": "Bearer"}
    assert problems.headers(errors.SlotFull()) == {}
    responses = problems.raises(errors.SlotFull, errors.CancelCutoffPassed, errors.NotFound)
    assert responses[409].description == "slot_full, cancel_cutoff_passed"
    assert responses[404].description == "not_found"
    assert responses[401].description == "unauthorized"


@pytest.mark.parametrize(
    "error",
    [
        errors.SlotFull(),
        errors.ActiveBookingExists("7KQ2M9XH4T1B"),
        errors.NotBookable("the window has already started"),
        errors.RateLimited(7),
        errors.IdempotencyInProgress(2),
        errors.Unauthorized(),
        errors.Unavailable(),
    ],
)
async def test_a_refusal_returned_is_the_answer_raised(error: errors.DomainError) -> None:
    """problems.refusal (a handler's return) answers what on_domain_error does, every time."""

    async def answer(app: Any) -> list[Any]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            raise AssertionError("a refusal reads nothing")

        await app({"type": "http"}, receive, send)
        return sent

    request: Any = None
    raised = problems.on_domain_error(request, error).to_asgi_response(None, request)
    for _ in range(2):  # built once, answered again the same
        returned = problems.refusal(error).to_asgi_response(None, request, headers={})
        assert await answer(returned) == await answer(raised)
    # A route's own headers (none of today's has any) are added as Litestar would add them.
    own = {"Cache-Control": "no-store"}
    raised = problems.on_domain_error(request, error).to_asgi_response(None, request, headers=own)
    returned = problems.refusal(error).to_asgi_response(None, request, headers=own)
    assert await answer(returned) == await answer(raised)
