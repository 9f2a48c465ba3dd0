"""Schedules checked against the locations' opening hours (SPEC §4.11, §4.12).

A store's data is judged stale when its last success is older than two schedule periods (SPEC
§4.12), so an open moment must not wait longer than that for the next fire of the schedules that
sync it. The check takes one week of fire times (active hours applied) and warns, per location,
about the open stretches that wait longer: typically a store open later than the schedule's active
hours (BOSQUE is open until midnight), or a last fire before closing time. Reconcile schedules
re-read whole past days and are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from statistics import median

from fluxion_etl.domain import cron
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.schedules import WEEKDAYS, ScheduleDef
from fluxion_etl.domain.states import Job
from fluxion_etl.domain.windows import local_midnight, opening_intervals

MAX_STRETCHES_SHOWN = 3


@dataclass(frozen=True, slots=True)
class UnsyncedHours:
    """Open stretches of one location that wait too long for the schedule's next fire."""

    schedule: str
    location_id: str
    location_name: str
    limit: timedelta
    stretches: tuple[tuple[datetime, datetime], ...]  # UTC

    def local_stretches(self, location: Location) -> str:
        shown = ", ".join(_local_stretch(s, location) for s in self.stretches[:MAX_STRETCHES_SHOWN])
        more = len(self.stretches) - MAX_STRETCHES_SHOWN
        return shown + (f" and {more} more" if more > 0 else "")


def schedule_warnings(
    schedule: ScheduleDef, locations: tuple[Location, ...] | list[Location], *, week_of: date
) -> list[str]:
    """``unsynced_open_hours`` as operator warnings, one per group of locations with the same
    stretches (19 stores closing at 21:00 make one warning, not 19)."""
    by_location = {loc.id: loc for loc in locations}
    groups: dict[tuple[str, timedelta], list[str]] = {}
    for found in unsynced_open_hours(schedule, locations, week_of=week_of):
        text = found.local_stretches(by_location[found.location_id])
        groups.setdefault((text, found.limit), []).append(
            f"{found.location_id} ({found.location_name})"
        )
    return [
        f"schedule {schedule.name}: {', '.join(names)} open but waiting more than "
        f"{int(limit.total_seconds() // 60)} min for the next fire on {text} (local time); "
        "extend the schedule's active hours or fire times to cover them"
        for (text, limit), names in groups.items()
    ]


def unsynced_open_hours(
    schedule: ScheduleDef, locations: tuple[Location, ...] | list[Location], *, week_of: date
) -> list[UnsyncedHours]:
    """The locations in the schedule's scope whose opening hours it leaves unsynced too long."""
    if schedule.job is Job.RECONCILE or not schedule.enabled:
        return []
    start = local_midnight(
        week_of - timedelta(days=week_of.weekday()), cron.zone(schedule.timezone)
    )
    end = start + timedelta(days=7)
    limit = 2 * _period(schedule, start)
    fires = [
        t
        for t in cron.fires_between(schedule.cron, schedule.timezone, start - _DAY, end + _DAY)
        if schedule.is_active_at(t)
    ]
    waits = _long_waits(fires, limit, start - _DAY, end + _DAY)
    out = []
    for location in _in_scope(schedule, locations):
        stretches = _open_parts(location, waits, start, end)
        if stretches:
            out.append(UnsyncedHours(schedule.name, location.id, location.name, limit, stretches))
    return out


_DAY = timedelta(days=1)


def _period(schedule: ScheduleDef, start: datetime) -> timedelta:
    """The schedule's usual gap between fires (the median over a week, active hours ignored)."""
    times = cron.next_fires(schedule.cron, schedule.timezone, start, 400)
    return timedelta(seconds=median((b - a).total_seconds() for a, b in pairwise(times)))


def _long_waits(
    fires: list[datetime], limit: timedelta, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Stretches whose moments wait longer than ``limit`` for the next fire."""
    bounds = [start, *fires, end]
    return [(a, b - limit) for a, b in pairwise(bounds) if b - a > limit]


def _in_scope(
    schedule: ScheduleDef, locations: tuple[Location, ...] | list[Location]
) -> list[Location]:
    chosen = [
        loc
        for loc in locations
        if loc.active and (schedule.locations is None or loc.id in schedule.locations)
    ]
    return chosen if schedule.job is Job.INVENTORY else [loc for loc in chosen if loc.has_sales]


def _open_parts(
    location: Location, waits: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> tuple[tuple[datetime, datetime], ...]:
    out = []
    for wait_from, wait_to in waits:
        lo, hi = max(wait_from, start), min(wait_to, end)
        if lo < hi:
            out.extend(opening_intervals(location.opening_hours, lo, hi, location.zone))
    return tuple(out)


def _local_stretch(stretch: tuple[datetime, datetime], location: Location) -> str:
    opens, closes = (t.astimezone(location.zone) for t in stretch)
    end = "24:00" if closes.time() == closes.time().min and closes.date() > opens.date() else None
    return f"{WEEKDAYS[opens.weekday()]} {opens:%H:%M}-{end or format(closes, '%H:%M')}"
