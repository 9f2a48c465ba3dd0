"""The sales coverage ledger: which time ranges of each location's sales are synced (SPEC §4.9).

A range is *final* when a successful read of it was loaded, *provisional* when the read returned
zero lines while the store was open: a store server that is offline still answers with an empty
list, so that stretch must be read again before anyone trusts it. Gaps are the opening hours not
covered by final ranges; provisional ones are reported as such.

The table stays compact: per location, ranges of one kind never overlap or touch (they are merged),
and provisional ranges never overlap final ones (final time is never downgraded; final coverage
replaces provisional). Each write is a constant number of statements around the pure arithmetic in
``domain.intervals``. Readers also tolerate a table that is not compact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, text

from fluxion_etl.domain.intervals import (
    Interval,
    clip,
    intersect_all,
    make,
    subtract_all,
    union,
)
from fluxion_etl.store.schema import sales_coverage

Covered = tuple[Interval, bool]  # a range and whether it is provisional


@dataclass(frozen=True, slots=True, order=True)
class CoverageRange:
    start: datetime
    end: datetime
    provisional: bool

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True, slots=True, order=True)
class Gap:
    """Time not finally covered; ``provisional`` when it is covered only provisionally."""

    start: datetime
    end: datetime
    provisional: bool

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


def add_coverage(
    conn: Connection,
    *,
    location_id: str,
    start: datetime,
    end: datetime,
    provisional: bool,
    run_id: int | None,
    now: datetime,
) -> None:
    """Record ``[start, end)`` as synced, merging it with the ranges it touches."""
    new = make(start, end)
    if new is None:
        return
    _lock_location(conn, location_id)
    stored = _stored(conn, location_id, new, touching=True)
    desired = _merge([row for row, _ in stored], new, provisional=provisional)
    kept: set[Covered] = set()
    stale: list[int] = []
    for row, row_id in stored:
        if row in desired and row not in kept:
            kept.add(row)
        else:
            stale.append(row_id)
    if stale:
        conn.execute(delete(sales_coverage).where(sales_coverage.c.id.in_(stale)))
    added = [
        {
            "location_id": location_id,
            "covered_from": interval.start,
            "covered_to": interval.end,
            "provisional": is_provisional,
            "run_id": run_id,
            "recorded_at": now,
        }
        for interval, is_provisional in sorted(desired - kept)
    ]
    if added:
        conn.execute(insert(sales_coverage), added)


def _merge(rows: list[Covered], new: Interval, *, provisional: bool) -> set[Covered]:
    """The rows that should replace ``rows`` once ``new`` is added."""
    final = [interval for interval, is_provisional in rows if not is_provisional]
    tentative = [interval for interval, is_provisional in rows if is_provisional]
    (tentative if provisional else final).append(new)
    final = union(final)
    tentative = subtract_all(tentative, final)
    return {(interval, False) for interval in final} | {(interval, True) for interval in tentative}


def coverage(
    conn: Connection, *, location_id: str, start: datetime, end: datetime
) -> list[CoverageRange]:
    """Covered ranges within ``[start, end)``, clipped to it, in time order."""
    window = make(start, end)
    if window is None:
        return []
    final, tentative = _kinds(conn, location_id, window)
    ranges = [CoverageRange(x.start, x.end, False) for x in clip(final, window)]
    ranges += [CoverageRange(x.start, x.end, True) for x in clip(tentative, window)]
    return sorted(ranges)


def uncovered(conn: Connection, *, location_id: str, within: Sequence[Interval]) -> list[Gap]:
    """The parts of ``within`` (e.g. opening hours) without final coverage, in time order."""
    wanted = union(within)
    if not wanted:
        return []
    final, tentative = _kinds(conn, location_id, Interval(wanted[0].start, wanted[-1].end))
    missing = subtract_all(wanted, final)
    gaps = [Gap(x.start, x.end, False) for x in subtract_all(missing, tentative)]
    gaps += [Gap(x.start, x.end, True) for x in intersect_all(missing, tentative)]
    return sorted(gaps)


def is_covered(conn: Connection, *, location_id: str, start: datetime, end: datetime) -> bool:
    """True when all of ``[start, end)`` is finally covered (an empty range trivially is)."""
    window = make(start, end)
    return window is None or not uncovered(conn, location_id=location_id, within=[window])


def _kinds(
    conn: Connection, location_id: str, window: Interval
) -> tuple[list[Interval], list[Interval]]:
    """Final and provisional coverage overlapping ``window``, provisional minus final."""
    stored = [row for row, _ in _stored(conn, location_id, window, touching=False)]
    final = union(interval for interval, is_provisional in stored if not is_provisional)
    tentative = [interval for interval, is_provisional in stored if is_provisional]
    return final, subtract_all(tentative, final)


def _stored(
    conn: Connection, location_id: str, window: Interval, *, touching: bool
) -> list[tuple[Covered, int]]:
    """Rows overlapping ``window`` (or also just touching it, for merging), with their ids."""
    table = sales_coverage.c
    query = select(table.id, table.covered_from, table.covered_to, table.provisional).where(
        table.location_id == location_id,
        table.covered_from <= window.end if touching else table.covered_from < window.end,
        table.covered_to >= window.start if touching else table.covered_to > window.start,
    )
    return [
        ((Interval(row.covered_from, row.covered_to), bool(row.provisional)), row.id)
        for row in conn.execute(query)
    ]


def _lock_location(conn: Connection, location_id: str) -> None:
    """Serialise coverage writers of one location until commit (a sales run and a reconcile hold
    different leases). SQLite needs nothing: ``BEGIN IMMEDIATE`` already serialises writers."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"sales_coverage:{location_id}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
