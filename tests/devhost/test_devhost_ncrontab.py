"""NCRONTAB parsing and next-occurrence, checked against NCrontab's documented behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devhost.ncrontab import (
    CronParseError,
    CronSchedule,
    IntervalSchedule,
    ScheduleNeverOccursError,
    parse_schedule,
    parse_timespan,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nexts(expression: str, start: str, count: int) -> list[str]:
    schedule = CronSchedule.parse(expression)
    moment = at(start)
    found = []
    for _ in range(count):
        moment = schedule.next_occurrence(moment)
        found.append(moment.strftime("%Y-%m-%d %H:%M:%S"))
    return found


def test_every_fifteen_minutes_the_projects_schedule() -> None:
    assert nexts("0 */15 * * * *", "2026-01-01T10:07:30", 3) == [
        "2026-01-01 10:15:00",
        "2026-01-01 10:30:00",
        "2026-01-01 10:45:00",
    ]


def test_next_is_strictly_after_and_ignores_subseconds() -> None:
    schedule = CronSchedule.parse("0 */15 * * * *")
    assert schedule.next_occurrence(at("2026-01-01T10:15:00")) == at("2026-01-01T10:30:00")
    # Like NCrontab: the search starts at the next whole second.
    assert schedule.next_occurrence(at("2026-01-01T10:14:59.900")) == at("2026-01-01T10:15:00")


def test_result_is_utc_and_naive_input_is_utc() -> None:
    schedule = CronSchedule.parse("0 0 12 * * *")
    naive = schedule.next_occurrence(datetime(2026, 3, 1, 11, 0))
    assert naive == at("2026-03-01T12:00:00") and naive.tzinfo == UTC
    # 13:00 at +02:00 is 11:00 UTC, so noon UTC is still ahead.
    aware = schedule.next_occurrence(datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=2))))
    assert aware == at("2026-03-01T12:00:00")


def test_every_second_and_rollovers() -> None:
    assert nexts("* * * * * *", "2026-12-31T23:59:58", 3) == [
        "2026-12-31 23:59:59",
        "2027-01-01 00:00:00",
        "2027-01-01 00:00:01",
    ]


def test_lists_ranges_and_steps() -> None:
    schedule = CronSchedule.parse("5,10-12 1-10/4 */6 * * *")
    assert schedule.seconds == (5, 10, 11, 12)
    assert schedule.minutes == (1, 5, 9)
    assert schedule.hours == (0, 6, 12, 18)


def test_value_with_step_runs_to_the_field_maximum() -> None:
    assert CronSchedule.parse("0 50/3 * * * *").minutes == (50, 53, 56, 59)


def test_reversed_range_is_swapped_and_zero_step_is_one() -> None:
    schedule = CronSchedule.parse("0 5-1 * * * *")
    assert schedule.minutes == (1, 2, 3, 4, 5)
    assert CronSchedule.parse("*/0 * * * * *").seconds == tuple(range(60))


def test_weekday_names_and_numbers() -> None:
    # 2026-01-05 is a Monday.
    assert nexts("0 30 9 * * MON-FRI", "2026-01-09T10:00:00", 2) == [
        "2026-01-12 09:30:00",
        "2026-01-13 09:30:00",
    ]
    assert CronSchedule.parse("0 0 0 * * 0").days_of_week == frozenset({0})
    assert CronSchedule.parse("0 0 0 * * sun,Sat").days_of_week == frozenset({0, 6})
    # NCrontab matches a case-insensitive prefix of the full name.
    assert CronSchedule.parse("0 0 0 * * Tuesday").days_of_week == frozenset({2})
    assert CronSchedule.parse("0 0 0 * * tu").days_of_week == frozenset({2})


def test_month_names() -> None:
    assert CronSchedule.parse("0 0 0 1 JAN,jul *").months == frozenset({1, 7})
    assert CronSchedule.parse("0 0 0 1 February-APR *").months == frozenset({2, 3, 4})
    assert nexts("0 0 0 1 JAN *", "2026-03-01T00:00:00", 1) == ["2027-01-01 00:00:00"]


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # NCrontab ANDs them (Vixie cron would OR): Friday the 13th only.
    assert nexts("0 0 0 13 * FRI", "2026-01-01T00:00:00", 2) == [
        "2026-02-13 00:00:00",
        "2026-03-13 00:00:00",
    ]


def test_day_31_skips_short_months_and_leap_day() -> None:
    assert nexts("0 0 0 31 * *", "2026-01-31T00:00:00", 2) == [
        "2026-03-31 00:00:00",
        "2026-05-31 00:00:00",
    ]
    assert nexts("0 0 0 29 2 *", "2026-01-01T00:00:00", 1) == ["2028-02-29 00:00:00"]


def test_five_fields_mean_second_zero() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    assert schedule.seconds == (0,)
    assert schedule.next_occurrence(at("2026-01-01T00:03:10")) == at("2026-01-01T00:05:00")


def test_matches() -> None:
    schedule = CronSchedule.parse("0 */15 * * * *")
    assert schedule.matches(at("2026-01-01T10:45:00"))
    assert not schedule.matches(at("2026-01-01T10:45:01"))


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "60 * * * * *",
        "* 60 * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * 32 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "* * * * * FOO",
        "* * * * XYZ *",
        "a * * * * *",
        "1,,2 * * * * *",
        "*/x * * * * *",
        "? * * * * *",
        "L * * * * *",
        "1-70 * * * * *",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(CronParseError):
        CronSchedule.parse(expression)


def test_impossible_date_never_occurs() -> None:
    schedule = CronSchedule.parse("0 0 0 30 2 *")
    with pytest.raises(ScheduleNeverOccursError):
        schedule.next_occurrence(at("2026-01-01T00:00:00"))


def test_timespan_schedules() -> None:
    schedule = parse_schedule("00:05:00")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_occurrence(at("2026-01-01T00:00:00")) == at("2026-01-01T00:05:00")
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert isinstance(parse_schedule("0 */15 * * * *"), CronSchedule)
    with pytest.raises(CronParseError):
        parse_schedule("00:00:00")
    with pytest.raises(ValueError):
        parse_timespan("25:00:00")
