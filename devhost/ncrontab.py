"""NCRONTAB schedules as the Functions timer trigger reads them.

The timer trigger hands its ``schedule`` to NCrontab (atifaziz/NCrontab). This module
reproduces the parts of its grammar and its next-occurrence rule that a Functions app
can use, without any dependency:

* six fields ``{second} {minute} {hour} {day} {month} {day-of-week}``; five fields
  (no seconds, second 0) are accepted too, as the Functions host does;
* ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n``, ``a/n`` (a to the field maximum), lists;
* month names and day-of-week names, matched as a case-insensitive prefix of the full
  English name (``JAN``, ``Jan``, ``January``; ``MON``, ``Mo``), day of week 0-6 with
  Sunday 0 (7 is rejected, as NCrontab does);
* a reversed range (``5-1``) is the same as ``1-5``; a step of 0 is a step of 1;
* day-of-month and day-of-week must BOTH match (NCrontab semantics, unlike Vixie cron
  which ORs them when both are restricted).

A schedule that is a TimeSpan (``"00:05:00"``, ``"1.00:00:00"``) is an interval, which
the Functions host also accepts for the timer trigger.

All times are UTC: the host evaluates schedules in UTC unless WEBSITE_TIME_ZONE is set.
"""

from __future__ import annotations

import bisect
import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "CronParseError",
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "ScheduleNeverOccursError",
    "parse_schedule",
    "parse_timespan",
]

_MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_DAY_NAMES = (
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
)

# Far enough to find "29 Feb that is a Monday" (28-year cycle, skipping 2100).
_SEARCH_YEARS = 60


class CronParseError(ValueError):
    """The expression is not a valid NCRONTAB expression."""


class ScheduleNeverOccursError(ValueError):
    """The schedule is valid but has no occurrence (e.g. ``0 0 0 30 2 *``)."""


@dataclass(frozen=True)
class _FieldSpec:
    kind: str
    minimum: int
    maximum: int
    names: tuple[str, ...] = ()


_SECOND = _FieldSpec("second", 0, 59)
_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DAY = _FieldSpec("day", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES)
_DAY_OF_WEEK = _FieldSpec("day-of-week", 0, 6, _DAY_NAMES)


def _parse_value(text: str, spec: _FieldSpec) -> int:
    if not text:
        raise CronParseError(f"empty value in the {spec.kind} field")
    if text[0].isdigit():
        if not text.isdigit():
            raise CronParseError(f"{text!r} is not a number ({spec.kind} field)")
        return int(text)
    if spec.names:
        lowered = text.lower()
        for index, name in enumerate(spec.names):
            # NCrontab accepts any prefix of the full name, first match wins.
            if name.startswith(lowered):
                return index + spec.minimum
    raise CronParseError(f"{text!r} is not a valid {spec.kind} value")


def _check_range(value: int, spec: _FieldSpec) -> None:
    if not spec.minimum <= value <= spec.maximum:
        raise CronParseError(
            f"{value} is out of range for the {spec.kind} field ({spec.minimum}-{spec.maximum})"
        )


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    if not text:
        raise CronParseError(f"empty {spec.kind} field")
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec))
    return frozenset(values)


def _parse_item(item: str, spec: _FieldSpec) -> range:
    if not item:
        raise CronParseError(f"empty list element in the {spec.kind} field")
    step: int | None = None
    if "/" in item:
        base, _, step_text = item.partition("/")
        if not step_text.isdigit():
            raise CronParseError(f"invalid step {step_text!r} in the {spec.kind} field")
        step = max(int(step_text), 1)
        item = base
    if item == "*":
        return range(spec.minimum, spec.maximum + 1, step or 1)
    if "-" in item[1:]:
        dash = item.index("-", 1)
        first = _parse_value(item[:dash], spec)
        last = _parse_value(item[dash + 1 :], spec)
        first, last = min(first, last), max(first, last)
        _check_range(first, spec)
        _check_range(last, spec)
        return range(first, last + 1, step or 1)
    value = _parse_value(item, spec)
    _check_range(value, spec)
    if step is None:
        return range(value, value + 1)
    return range(value, spec.maximum + 1, step)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class Schedule(Protocol):
    """Anything that yields the next firing time after a moment."""

    def next_occurrence(self, after: datetime) -> datetime: ...


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        fields = expression.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise CronParseError(
                f"{expression!r} must have 6 fields (second minute hour day month "
                f"day-of-week), or 5 without seconds; it has {len(fields)}"
            )
        specs = (_SECOND, _MINUTE, _HOUR, _DAY, _MONTH, _DAY_OF_WEEK)
        try:
            parsed = [_parse_field(text, spec) for text, spec in zip(fields, specs, strict=True)]
        except CronParseError as exc:
            raise CronParseError(f"invalid NCRONTAB expression {expression!r}: {exc}") from None
        return cls(
            expression=expression,
            seconds=tuple(sorted(parsed[0])),
            minutes=tuple(sorted(parsed[1])),
            hours=tuple(sorted(parsed[2])),
            days=parsed[3],
            months=parsed[4],
            days_of_week=parsed[5],
        )

    def matches(self, moment: datetime) -> bool:
        """True if the schedule fires at this second (UTC)."""
        moment = _as_utc(moment)
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and self._day_matches(moment)
        )

    def _day_matches(self, moment: datetime) -> bool:
        # Python: Monday=0; NCRONTAB: Sunday=0.
        weekday = (moment.weekday() + 1) % 7
        return moment.month in self.months and moment.day in self.days and weekday in self.days_of_week

    def next_occurrence(self, after: datetime) -> datetime:
        """The first firing time strictly after ``after``, in UTC, at whole seconds.

        Like NCrontab, sub-second precision of ``after`` is ignored: the search starts at
        the next whole second. A naive ``after`` is taken as UTC.
        """
        start = _as_utc(after).replace(microsecond=0) + timedelta(seconds=1)
        limit_year = start.year + _SEARCH_YEARS
        day = start.date()
        first_day = True
        while day.year <= limit_year:
            if day.month not in self.months:
                # Jump to the first day of the next month.
                last = calendar.monthrange(day.year, day.month)[1]
                day = day.replace(day=last) + timedelta(days=1)
                first_day = False
                continue
            if not self._day_matches(datetime(day.year, day.month, day.day, tzinfo=UTC)):
                day += timedelta(days=1)
                first_day = False
                continue
            found = self._first_time_in_day(
                (start.hour, start.minute, start.second) if first_day else (0, 0, 0)
            )
            if found is not None:
                hour, minute, second = found
                return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)
            day += timedelta(days=1)
            first_day = False
        raise ScheduleNeverOccursError(
            f"schedule {self.expression!r} has no occurrence in the next {_SEARCH_YEARS} years"
        )

    def _first_time_in_day(self, earliest: tuple[int, int, int]) -> tuple[int, int, int] | None:
        """The smallest (h, m, s) in the schedule that is >= earliest, if any."""
        hour0, minute0, second0 = earliest
        for hour in self.hours[bisect.bisect_left(self.hours, hour0) :]:
            minute_floor = minute0 if hour == hour0 else 0
            for minute in self.minutes[bisect.bisect_left(self.minutes, minute_floor) :]:
                second_floor = second0 if (hour, minute) == (hour0, minute0) else 0
                index = bisect.bisect_left(self.seconds, second_floor)
                if index < len(self.seconds):
                    return hour, minute, self.seconds[index]
        return None


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule: fire every ``interval``."""

    expression: str
    interval: timedelta

    def next_occurrence(self, after: datetime) -> datetime:
        return _as_utc(after) + self.interval


_TIMESPAN = re.compile(
    r"^\s*(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})"
    r"(?::(?P<s>\d{1,2})(?:\.(?P<frac>\d{1,7}))?)?\s*$"
)


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan string: ``[-][d.]hh:mm[:ss[.fffffff]]``."""
    match = _TIMESPAN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan (expected [d.]hh:mm:ss)")
    hours, minutes = int(match["h"]), int(match["m"])
    seconds = int(match["s"] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a TimeSpan (a component is out of range)")
    frac = match["frac"] or "0"
    value = timedelta(
        days=int(match["days"] or 0),
        hours=hours,
        minutes=minutes,
        seconds=seconds,
        microseconds=int(frac.ljust(7, "0")[:6]),
    )
    return -value if match["sign"] else value


def parse_schedule(expression: str) -> CronSchedule | IntervalSchedule:
    """Parse a timer-trigger schedule: NCRONTAB first, then a TimeSpan interval."""
    try:
        return CronSchedule.parse(expression)
    except CronParseError as cron_error:
        if ":" not in expression:
            raise
        try:
            interval = parse_timespan(expression)
        except ValueError:
            raise cron_error from None
        if interval <= timedelta(0):
            raise CronParseError(f"interval schedule {expression!r} must be positive") from None
        return IntervalSchedule(expression=expression, interval=interval)
