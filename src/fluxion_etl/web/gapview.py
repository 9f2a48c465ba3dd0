"""The gaps page's read model: coverage per location and local day, and the open gaps.

Gaps come from ``ops.gaps.list_gaps`` (the same list the CLI, the API and alerts use). The
calendar measures, per location and local day, how much of the day's opening hours the coverage
ledger holds finally, provisionally or not at all, judged like the gaps: from the location's
first covered instant, up to ``now`` minus the settling time the next scheduled run covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.domain.intervals import Interval, clip, intersect_all, make, total, union
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.windows import local_date, local_day_bounds, opening_intervals
from fluxion_etl.ops.gaps import SETTLE, LocationGap, history_starts, list_gaps, sales_locations
from fluxion_etl.store import coverage

CALENDAR_DAYS = 14
MAX_CALENDAR_DAYS = 42


@dataclass(frozen=True, slots=True)
class DayCoverage:
    """One calendar cell. ``state``: full, partial, none, provisional, closed or unjudged."""

    day: date
    state: str
    percent: int | None  # final coverage of the judged opening hours
    open_seconds: float
    final_seconds: float
    provisional_seconds: float


@dataclass(frozen=True, slots=True)
class CalendarRow:
    location: Location
    days: list[DayCoverage]
    gaps: int


def open_gaps(services: ServiceContext, conn: Connection, now: datetime) -> list[LocationGap]:
    return list_gaps(conn, services.config, now=now, days=services.settings.gap_days)


def calendar_days(today: date, days: int) -> list[date]:
    """The last ``days`` local days, oldest first, today last."""
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def calendar(
    services: ServiceContext,
    conn: Connection,
    *,
    now: datetime,
    days: int,
    gaps: list[LocationGap],
) -> list[CalendarRow]:
    locations = sales_locations(services.config)
    firsts = history_starts(conn, locations)
    rows = []
    for location in locations:
        today = local_date(now, location.zone)
        wanted = calendar_days(today, days)
        start = local_day_bounds(wanted[0], location.zone)[0]
        stored = coverage.coverage(conn, location_id=location.id, start=start, end=now)
        cells = [
            _day(location, day, stored, first=firsts.get(location.id), until=now - SETTLE)
            for day in wanted
        ]
        count = sum(1 for gap in gaps if gap.location_id == location.id)
        rows.append(CalendarRow(location, cells, count))
    return rows


def _day(
    location: Location,
    day: date,
    stored: list[coverage.CoverageRange],
    *,
    first: datetime | None,
    until: datetime,
) -> DayCoverage:
    day_start, day_end = local_day_bounds(day, location.zone)
    opening = [
        Interval(lo, hi)
        for lo, hi in opening_intervals(location.opening_hours, day_start, day_end, location.zone)
    ]
    if not opening:
        return DayCoverage(day, "closed", None, 0, 0, 0)
    judged = make(max(day_start, first) if first else day_end, min(day_end, until))
    if judged is None:
        return DayCoverage(day, "unjudged", None, 0, 0, 0)
    hours = clip(opening, judged)
    open_seconds = total(hours).total_seconds()
    if open_seconds == 0:
        return DayCoverage(day, "unjudged", None, 0, 0, 0)
    final = union(r.interval for r in stored if not r.provisional)
    tentative = union(r.interval for r in stored if r.provisional)
    final_seconds = total(intersect_all(hours, final)).total_seconds()
    provisional_seconds = total(intersect_all(hours, tentative)).total_seconds()
    # Floor, so only complete coverage reads 100 (and float division cannot turn 100 into 99).
    complete = final_seconds >= open_seconds
    percent = 100 if complete else min(99, int(100 * final_seconds / open_seconds))
    return DayCoverage(
        day,
        _state(open_seconds, final_seconds, provisional_seconds),
        percent,
        open_seconds,
        final_seconds,
        provisional_seconds,
    )


def _state(open_seconds: float, final: float, provisional: float) -> str:
    if final >= open_seconds:
        return "full"
    if final + provisional >= open_seconds and provisional > 0:
        return "provisional"
    return "partial" if final > 0 or provisional > 0 else "none"
