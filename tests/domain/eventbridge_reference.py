"""An independent reading of EventBridge Scheduler cron expressions, written from AWS's
documentation (not from our converter), to check that an exported expression fires when the
embedded scheduler does.

``cron(minutes hours day-of-month month day-of-week year)``; weekdays 1-7 with SUN = 1; exactly one
of the day fields is ``?``; ``L`` in day-of-month is the last day; ``d#n`` the n-th weekday ``d``;
``a/s`` runs from ``a`` to the field's end. The expression is evaluated in the schedule's zone; a
local time skipped by DST is skipped, a repeated one fires once (AWS: "When the time shifts forward
in Spring, your schedule invocation gets skipped ... When the time shifts back in the Fall, your
schedule runs only once").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
EXPRESSION = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")


def _number(text: str, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + 1
    return int(text)


def _values(field: str, lo: int, hi: int, names: tuple[str, ...] = ()) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, b = base.split("-")
            start, end = _number(a, names), _number(b, names)
        else:
            start = _number(base, names)
            end = hi if step_text else start
        assert lo <= start <= end <= hi, f"{part!r} outside {lo}-{hi}"
        out.update(range(start, end + 1, step))
    return out


@dataclass(frozen=True)
class EventBridgeCron:
    minutes: set[int]
    hours: set[int]
    dom: str
    months: set[int]
    dow: str
    years: set[int]

    @classmethod
    def parse(cls, expression: str) -> EventBridgeCron:
        match = EXPRESSION.match(expression)
        assert match, expression
        minute, hour, dom, month, dow, year = match.groups()
        assert (dom == "?") != (dow == "?"), f"exactly one day field must be '?': {expression}"
        return cls(
            minutes=_values(minute, 0, 59),
            hours=_values(hour, 0, 23),
            dom=dom,
            months=_values(month, 1, 12, MONTHS),
            dow=dow,
            years=_values(year, 1970, 2199),
        )

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months or day.year not in self.years:
            return False
        if self.dow == "?":
            if self.dom == "L":
                return (day + timedelta(days=1)).month != day.month
            return day.day in _values(self.dom, 1, 31)
        weekday = (day.weekday() + 1) % 7 + 1  # Monday = 0 in Python; SUN = 1 in EventBridge
        if "#" in self.dow:
            wanted, nth = self.dow.split("#")
            return weekday == _number(wanted, DAYS) and (day.day - 1) // 7 + 1 == int(nth)
        return weekday in _values(self.dow, 1, 7, DAYS)

    def fires(self, zone: str, after: datetime) -> Iterator[datetime]:
        """UTC instants strictly after ``after``, in order, with EventBridge's DST behaviour."""
        tz = ZoneInfo(zone)
        day = after.astimezone(tz).date() - timedelta(days=1)
        while True:
            if self.day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        instant = _eventbridge_instant(
                            datetime.combine(day, time(hour, minute)), tz
                        )
                        if instant is not None and instant > after:
                            yield instant
            day += timedelta(days=1)


def _eventbridge_instant(wall: datetime, tz: ZoneInfo) -> datetime | None:
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        return None  # skipped by spring forward: EventBridge does not invoke
    return first.astimezone(UTC)  # a repeated time: once
