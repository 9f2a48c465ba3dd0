"""Zone-aware cron fire times (croniter does the cron matching; this module owns time zones).

Expressions have the five standard fields ``minute hour day-of-month month day-of-week``
(day-of-week 0-7, Sunday = 0 or 7; names such as MON and JAN; ``L`` for the last day of the month;
``d#n`` for the n-th weekday of the month). When both day fields are restricted, a day matches
either (standard cron). No seconds or year field, no ``@daily`` aliases, no ``W``, no hashed ``H``.

Daylight-saving policy (the fire times of a schedule in a zone that changes its clocks):

* Fire times are local wall-clock times in the schedule's zone: ``0 3 * * *`` in
  America/New_York is 03:00 New York time in winter and in summer.
* A local fire time that does not exist (the hour skipped when clocks spring forward) runs at the
  next valid instant, the moment the clocks jump: ``30 2 * * *`` on 2026-03-08 in New York fires at
  03:00 EDT (07:00 UTC). Several skipped fire times collapse into that one fire.
* A local fire time that occurs twice (the hour repeated when clocks fall back) fires once, at its
  first occurrence: ``30 1 * * *`` on 2026-11-01 in New York fires at 01:30 EDT (05:30 UTC) only.
  A schedule that fires every 30 minutes therefore does not fire during the repeated hour.

EventBridge Scheduler agrees on the repeated hour but skips fire times in a skipped hour instead
of running them late; ``fluxion_etl.domain.exports`` notes the difference for zones with DST.
America/Caracas has no DST, so there the two never differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from fluxion_etl.errors import CronError

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
FORMAT_HINT = "five fields: minute hour day-of-month month day-of-week, e.g. '0,30 * * * *'"
LAST = "L"  # the last day of the month (day-of-month), or the last such weekday (nth weekday)
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_LETTERS = re.compile(r"[A-Z]+")
_ONE_VALUE_RANGE = re.compile(r"(?<![0-9A-Z])([0-9A-Z]+)-\1(?![0-9A-Z])")
_REFERENCE = datetime(2000, 1, 1)  # noqa: DTZ001 - croniter matches naive local wall-clock times
_MAX_DST_SHIFT = timedelta(hours=3)  # larger than any clock change in the tz database


@dataclass(frozen=True, slots=True)
class CronFields:
    """The expanded fields of a valid expression; ``None`` means the field is ``*``."""

    minutes: tuple[int, ...] | None
    hours: tuple[int, ...] | None
    days_of_month: tuple[int, ...] | None
    last_day_of_month: bool
    months: tuple[int, ...] | None
    days_of_week: tuple[int, ...] | None  # 0 = Sunday ... 6 = Saturday
    nth_weekdays: tuple[tuple[int, int | str], ...]  # (weekday, 1..5 or "L") from d#n or Ld

    @property
    def day_of_month_restricted(self) -> bool:
        return self.days_of_month is not None or self.last_day_of_month

    @property
    def day_of_week_restricted(self) -> bool:
        return self.days_of_week is not None


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a CronError saying it is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(name, "is not an IANA time zone (e.g. America/Caracas)") from None


@lru_cache(maxsize=256)
def validate_cron(expression: str) -> str:
    """The expression with its whitespace normalised, or a CronError saying what to write.

    Remembered per expression (a pure function; a refusal is raised again each time): every
    fire-time computation validates first, and parsing with croniter was most of the embedded
    scheduler's idle CPU.
    """
    normalised = " ".join(expression.split())
    fields = normalised.split(" ") if normalised else []
    if normalised.startswith("@"):
        raise CronError(expression, f"aliases such as @daily are not supported; use {FORMAT_HINT}")
    if len(fields) == 6:
        raise CronError(
            expression,
            "has 6 fields: a seconds (or year) field is not supported, schedules fire at minute "
            f"granularity; use {FORMAT_HINT}",
        )
    if len(fields) != 5:
        raise CronError(expression, f"has {len(fields)} fields; use {FORMAT_HINT}")
    for index, field in enumerate(fields):
        _check_letters(expression, index, field)
        _check_ranges(expression, index, field)
    _check_nth_weekdays(_parse(normalised, expression), expression)
    _first_fire(normalised, expression)
    return normalised


def _check_letters(expression: str, index: int, field: str) -> None:
    """Refuse letters croniter would accept with another meaning (it reads ``15W`` as ``15``)."""
    allowed = {2: ("L",), 3: _MONTH_NAMES, 4: (*_DAY_NAMES, "L")}.get(index, ())
    for word in _LETTERS.findall(field.upper()):
        if word in allowed:
            continue
        if "W" in word or word == "H":
            reason = "W (nearest weekday) and H (hashed) are not supported; name the values"
        else:
            reason = f"{word!r} is not allowed here"
        raise CronError(expression, f"{FIELD_NAMES[index]} field {field!r}: {reason}")


def _check_ranges(expression: str, index: int, field: str) -> None:
    """croniter reads a one-value range such as ``5-5`` as the whole field: refuse it."""
    found = _ONE_VALUE_RANGE.search(field.upper())
    if found:
        raise CronError(
            expression,
            f"{FIELD_NAMES[index]} field {field!r}: the range {found.group(0)!r} has one value; "
            f"write {found.group(1)!r}",
        )


def _check_nth_weekdays(parsed: croniter, expression: str) -> None:
    """croniter requires both (not either) when ``d#n``/``Ld`` meets a day of month: refuse it."""
    if parsed.nth_weekday_of_month and parsed.expanded[2] != ["*"]:
        raise CronError(
            expression,
            "an n-th or last weekday (d#n, Ld) cannot be combined with a day of month; "
            "use * for the day of month",
        )


def _parse(normalised: str, original: str) -> croniter:
    try:
        return croniter(normalised, _REFERENCE)
    except CroniterError as exc:
        raise CronError(original, f"{exc}; use {FORMAT_HINT}") from None


def _first_fire(normalised: str, original: str) -> None:
    try:
        croniter(normalised, _REFERENCE).get_next(datetime)
    except CroniterBadDateError:
        raise CronError(original, "never fires (e.g. a 31st in a 30-day month)") from None


def cron_fields(expression: str) -> CronFields:
    """The expanded fields (for exports); raises CronError for an invalid expression."""
    normalised = validate_cron(expression)
    parsed = _parse(normalised, expression)
    expanded: list[list[Any]] = parsed.expanded
    nth: dict[int, set[Any]] = parsed.nth_weekday_of_month
    days = expanded[2]
    numeric_days = tuple(sorted(d for d in days if isinstance(d, int)))
    return CronFields(
        minutes=_values(expanded[0]),
        hours=_values(expanded[1]),
        days_of_month=None if days == ["*"] else (numeric_days or None),
        last_day_of_month="l" in days,
        months=_values(expanded[3]),
        days_of_week=_values(expanded[4]),
        nth_weekdays=tuple(
            (day, LAST if n == "l" else int(n))
            for day in sorted(nth)
            for n in sorted(nth[day], key=str)
        ),
    )


def _values(field: list[Any]) -> tuple[int, ...] | None:
    if field == ["*"]:
        return None
    return tuple(sorted({int(v) for v in field}))


# --- fire times --------------------------------------------------------------------------------


def fires_after(expression: str, zone_name: str, after: datetime) -> Iterator[datetime]:
    """Every fire time (UTC) strictly after ``after``, in order, under the DST policy above."""
    tz = zone(zone_name)
    _require_aware(after)
    wall = after.astimezone(tz).replace(tzinfo=None)
    matches = croniter(validate_cron(expression), wall)
    last: datetime | None = None
    while True:
        instant = to_instant(matches.get_next(datetime), tz)
        if instant > after and instant != last:
            last = instant
            yield instant


def fires_between(
    expression: str, zone_name: str, start: datetime, end: datetime
) -> Iterator[datetime]:
    """Fire times (UTC) in the half-open range ``(start, end]``."""
    _require_aware(end)
    for instant in fires_after(expression, zone_name, start):
        if instant > end:
            return
        yield instant


def next_fires(expression: str, zone_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times (UTC) strictly after ``after``."""
    times = fires_after(expression, zone_name, after)
    return [next(times) for _ in range(count)]


def next_fire(expression: str, zone_name: str, after: datetime) -> datetime:
    return next(fires_after(expression, zone_name, after))


def previous_fire(expression: str, zone_name: str, at_or_before: datetime) -> datetime:
    """The latest fire time (UTC) at or before ``at_or_before``.

    Local wall time maps to instants monotonically (skipped times move to the jump, repeated times
    take their first occurrence), so walking back from a wall time safely past ``at_or_before``
    (beyond any DST shift) the first fire at or before it is the latest one.
    """
    tz = zone(zone_name)
    _require_aware(at_or_before)
    wall = (at_or_before + _MAX_DST_SHIFT).astimezone(tz).replace(tzinfo=None)
    matches = croniter(validate_cron(expression), wall)
    while True:
        instant = to_instant(matches.get_prev(datetime), tz)
        if instant <= at_or_before:
            return instant


def to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """A local wall-clock time as a UTC instant under the DST policy (module docstring)."""
    if is_nonexistent(wall, tz):
        return _transition_after_gap(wall, tz)
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)  # fold=0: first of a repeated time


def is_nonexistent(wall: datetime, tz: ZoneInfo) -> bool:
    """Whether the local wall-clock time falls in a skipped (spring-forward) hour."""
    first = wall.replace(tzinfo=tz, fold=0)
    return first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall


def _transition_after_gap(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jump over the non-existent local ``wall`` (to the second)."""
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # offset after the jump: earlier
    after = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)  # offset before the jump: later
    lo, hi = min(before, after), max(before, after)
    target = hi.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant!r}: fire times are computed from aware instants")
