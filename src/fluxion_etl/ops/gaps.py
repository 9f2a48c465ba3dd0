"""Gaps: a location's opening hours of the last N days that no successful read covered (SPEC §4.9).

    list_gaps(conn, config, *, now, days=14, location_id=None, settle=SETTLE) -> list[LocationGap]
    summarize(gaps) -> dict[str, GapSummary]            per location: count, seconds, days, oldest

A gap is a stretch of a store's opening hours without *final* coverage in the coverage ledger:
``provisional=False`` when nothing covers it, ``provisional=True`` when it was read only as zero
lines while the store was open (a store server that is offline still answers with an empty list,
so that stretch must be read again before anyone trusts it).

What is judged, per active location with sales (a distribution centre has none):
- from local midnight ``days - 1`` days before today (``days=1``: today only), but never before
  the location's first covered range or the first day a backfill asked for: time before both is
  history never loaded, not a gap (``fluxion-etl run sales --from ... --to ...`` loads it); a
  location never synced nor asked for has no gaps (its staleness is what is alerted);
- up to ``now - settle``: the last minutes are covered by the next scheduled run, not missing.

Each gap lies within one local business day (it is cut at local midnight), so recovery can re-read
whole days. Gaps are in time order per location, locations in configuration order.

``list_gaps`` raises ``BadInputError`` for an unknown location or one without sales.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, func, select

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.intervals import Interval
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.states import Job
from fluxion_etl.domain.windows import (
    local_date,
    local_day_bounds,
    local_midnight,
    opening_intervals,
)
from fluxion_etl.errors import BadInputError
from fluxion_etl.store import coverage
from fluxion_etl.store.schema import run_items, runs, sales_coverage

DEFAULT_DAYS = 14
MAX_DAYS = 92
# A scheduled sales run reads up to the moment it runs, every 30 minutes: the last stretch is
# always waiting for the next run, and is not reported as missing.
SETTLE = timedelta(minutes=45)


@dataclass(frozen=True, slots=True, order=True)
class LocationGap:
    """``[start, end)`` (UTC) of one local ``day`` of ``location_id`` without final coverage."""

    location_id: str
    start: datetime
    end: datetime
    day: date
    provisional: bool

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def age(self, now: datetime) -> timedelta:
        """How long ago the gap ended: a gap the next scheduled run will not fill grows old."""
        return now - self.end


@dataclass(frozen=True, slots=True)
class GapSummary:
    location_id: str
    count: int
    seconds: float
    provisional_seconds: float
    days: tuple[date, ...]
    oldest_end: datetime


def list_gaps(
    conn: Connection,
    config: ChainConfig,
    *,
    now: datetime,
    days: int = DEFAULT_DAYS,
    location_id: str | None = None,
    settle: timedelta = SETTLE,
) -> list[LocationGap]:
    """The gaps of every active location with sales (or of ``location_id``); see the module."""
    if not 1 <= days <= MAX_DAYS:
        raise BadInputError("days", f"{days} is out of range: give 1 to {MAX_DAYS}")
    locations = sales_locations(config, location_id)
    firsts = history_starts(conn, locations)
    out: list[LocationGap] = []
    for location in locations:
        first = firsts.get(location.id)
        if first is None:
            continue
        since = max(first, window_start(location, now, days))
        out.extend(location_gaps(conn, location, since=since, until=now - settle))
    return out


def sales_locations(config: ChainConfig, location_id: str | None = None) -> list[Location]:
    """The active locations with sales, or just ``location_id`` (checked)."""
    if location_id is None:
        return [loc for loc in config.locations if loc.active and loc.has_sales]
    if location_id not in config.location_ids:
        known = ", ".join(sorted(config.location_ids))
        raise BadInputError("location", f"unknown location {location_id!r}; known: {known}")
    location = config.location(location_id)
    if not location.has_sales:
        raise BadInputError(
            "location", f"{location_id} has no sales (a distribution centre has only inventory)"
        )
    return [location]


def window_start(location: Location, now: datetime, days: int) -> datetime:
    """Local midnight ``days - 1`` days before the location's today."""
    today = local_date(now, location.zone)
    return local_midnight(today - timedelta(days=days - 1), location.zone)


def history_starts(conn: Connection, locations: Sequence[Location]) -> dict[str, datetime]:
    """Where each location's sales history begins: its earliest covered instant, or the local
    midnight of the earliest day a run asked for (a backfill or a recovery), whichever is
    earlier. A day asked for and never loaded is a gap, though nothing before it was loaded."""
    if not locations:
        return {}
    ids = [loc.id for loc in locations]
    column = sales_coverage.c
    covered = (
        select(column.location_id, func.min(column.covered_from).label("first"))
        .where(column.location_id.in_(ids))
        .group_by(column.location_id)
    )
    starts = {str(row.location_id): row.first for row in conn.execute(covered)}
    asked = (
        select(run_items.c.location_id, func.min(runs.c.date_from).label("first"))
        .join_from(run_items, runs, run_items.c.run_id == runs.c.id)
        .where(
            run_items.c.location_id.in_(ids),
            runs.c.job == Job.SALES.value,
            runs.c.date_from.is_not(None),
        )
        .group_by(run_items.c.location_id)
    )
    zones = {loc.id: loc.zone for loc in locations}
    for row in conn.execute(asked):
        location_id = str(row.location_id)
        midnight = local_midnight(row.first, zones[location_id])
        starts[location_id] = min(starts.get(location_id, midnight), midnight)
    return starts


def location_gaps(
    conn: Connection, location: Location, *, since: datetime, until: datetime
) -> list[LocationGap]:
    """Opening hours of ``location`` in ``[since, until)`` without final coverage, per local day."""
    if since >= until:
        return []
    opening = [
        Interval(lo, hi)
        for lo, hi in opening_intervals(location.opening_hours, since, until, location.zone)
    ]
    missing = coverage.uncovered(conn, location_id=location.id, within=opening)
    return [
        piece
        for gap in missing
        for piece in _by_local_day(location, gap.start, gap.end, gap.provisional)
    ]


def _by_local_day(
    location: Location, start: datetime, end: datetime, provisional: bool
) -> list[LocationGap]:
    pieces = []
    cursor = start
    while cursor < end:
        day = local_date(cursor, location.zone)
        piece_end = min(end, local_day_bounds(day, location.zone)[1])
        pieces.append(LocationGap(location.id, cursor, piece_end, day, provisional))
        cursor = piece_end
    return pieces


def summarize(gaps: Iterable[LocationGap]) -> dict[str, GapSummary]:
    """Per location: how many gaps, how long in total (and provisionally), which days."""
    grouped: dict[str, list[LocationGap]] = {}
    for gap in gaps:
        grouped.setdefault(gap.location_id, []).append(gap)
    return {
        location_id: GapSummary(
            location_id=location_id,
            count=len(items),
            seconds=sum(g.seconds for g in items),
            provisional_seconds=sum(g.seconds for g in items if g.provisional),
            days=tuple(sorted({g.day for g in items})),
            oldest_end=min(g.end for g in items),
        )
        for location_id, items in grouped.items()
    }
