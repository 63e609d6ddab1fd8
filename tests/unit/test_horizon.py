"""Opening hours -> windows, the calendar, the rolling horizon: pure rules."""

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from slots_service.config import load_settings
from slots_service.horizon import CalendarMark, horizon, is_closed, plan_windows
from slots_service.models import HoursRange

SZ = ZoneInfo("Asia/Shanghai")
HOURS = {
    "mon": [HoursRange(start="09:00", end="12:00", capacity=10),
            HoursRange(start="14:00", end="17:30", capacity=8)],
}  # fmt: skip
MONDAY = date(2026, 11, 23)
SATURDAY = date(2026, 11, 28)


def test_a_day_is_cut_into_windows() -> None:
    windows = plan_windows(MONDAY, SZ, HOURS, 30, None)
    assert [(w.start, w.end, w.capacity) for w in windows[:2]] == [
        (time(9, 0), time(9, 30), 10),
        (time(9, 30), time(10, 0), 10),
    ]
    assert len(windows) == 6 + 7
    assert windows[-1].start == time(17, 0)
    assert windows[0].starts_at == datetime(2026, 11, 23, 9, 0, tzinfo=SZ)
    assert windows[0].starts_at.utcoffset() is not None
    assert windows[0].starts_at.isoformat() == "2026-11-23T09:00:00+08:00"


def test_a_closed_weekday_has_no_windows() -> None:
    assert plan_windows(SATURDAY, SZ, HOURS, 30, None) == []


def test_a_make_up_workday_borrows_a_weekday() -> None:
    mark = CalendarMark("workday", "mon", "调休")
    windows = plan_windows(SATURDAY, SZ, HOURS, 30, mark)
    assert len(windows) == 13
    assert windows[0].starts_at.date() == SATURDAY


def test_holidays_and_closures_close_a_day() -> None:
    assert is_closed(MONDAY, CalendarMark("holiday", None, "国庆节"), False, "mon")
    assert is_closed(MONDAY, None, True, "mon")
    assert not is_closed(SATURDAY, CalendarMark("workday", "mon", ""), False, "mon")
    assert not is_closed(MONDAY, None, False, "mon")


def test_a_withdrawn_make_up_workday_closes_its_day() -> None:
    assert is_closed(SATURDAY, None, False, "mon")  # planned as Monday, mark gone
    assert not is_closed(SATURDAY, None, False, None)  # never planned


def test_a_window_may_end_at_midnight() -> None:
    late = {"mon": [HoursRange(start="23:00", end="23:59", capacity=1)]}
    assert plan_windows(MONDAY, SZ, late, 30, None)[-1].end == time(0, 0)


@pytest.mark.parametrize(
    ("instant", "first", "last"),
    [
        ("2026-11-23T10:00:00+08:00", date(2026, 11, 24), date(2026, 12, 7)),
        # 23:59 local is still Monday; 00:00 local Tuesday opens Dec 8
        ("2026-11-23T15:59:00+00:00", date(2026, 11, 24), date(2026, 12, 7)),
        ("2026-11-23T16:00:00+00:00", date(2026, 11, 25), date(2026, 12, 8)),
    ],
)
def test_the_horizon_is_tomorrow_to_today_plus_14(instant: str, first: date, last: date) -> None:
    settings = load_settings({})
    assert horizon(datetime.fromisoformat(instant), SZ, settings) == (first, last)


def test_a_later_opening_time_keeps_the_newest_day_closed_until_then() -> None:
    settings = load_settings({"SLOTS_HORIZON_OPENS_AT": "08:00"})
    before = datetime.fromisoformat("2026-11-23T07:59:00+08:00")
    after = datetime.fromisoformat("2026-11-23T08:00:00+08:00")
    assert horizon(before, SZ, settings)[1] == date(2026, 12, 6)
    assert horizon(after, SZ, settings)[1] == date(2026, 12, 7)
