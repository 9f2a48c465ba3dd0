"""The coverage ledger on both dialects: merging, final over provisional, gaps, compactness."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, event, select

from fluxion_etl.domain.intervals import Interval
from fluxion_etl.store import coverage
from fluxion_etl.store.coverage import CoverageRange, Gap
from fluxion_etl.store.schema import sales_coverage

BASE = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # 07:00 in Caracas


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def add(
    conn: Connection,
    start: int,
    end: int,
    *,
    provisional: bool = False,
    loc: str = "t1",
    run: int = 1,
) -> None:
    coverage.add_coverage(
        conn,
        location_id=loc,
        start=at(start),
        end=at(end),
        provisional=provisional,
        run_id=run,
        now=at(end),
    )


def rows(conn: Connection, loc: str = "t1") -> list[tuple[datetime, datetime, bool]]:
    """The stored rows themselves, to check the table stays compact."""
    query = (
        select(
            sales_coverage.c.covered_from, sales_coverage.c.covered_to, sales_coverage.c.provisional
        )
        .where(sales_coverage.c.location_id == loc)
        .order_by(sales_coverage.c.covered_from)
    )
    return [(a, b, bool(p)) for a, b, p in conn.execute(query)]


def ranges(conn: Connection, start: int = -1000, end: int = 10_000) -> list[CoverageRange]:
    return coverage.coverage(conn, location_id="t1", start=at(start), end=at(end))


def final(start: int, end: int) -> CoverageRange:
    return CoverageRange(at(start), at(end), False)


def tentative(start: int, end: int) -> CoverageRange:
    return CoverageRange(at(start), at(end), True)


def test_adjacent_and_overlapping_final_ranges_merge_into_one_row(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 30)
        add(conn, 30, 60)
        add(conn, 50, 90)
        add(conn, 120, 150)
        assert rows(conn) == [(at(0), at(90), False), (at(120), at(150), False)]
        assert ranges(conn) == [final(0, 90), final(120, 150)]


def test_final_coverage_replaces_the_provisional_time_it_overlaps(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 100, provisional=True)
        add(conn, 40, 60)
        assert ranges(conn) == [tentative(0, 40), final(40, 60), tentative(60, 100)]
        add(conn, 0, 100)
        assert rows(conn) == [(at(0), at(100), False)]


def test_provisional_coverage_never_downgrades_final_time(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 30, 60)
        add(conn, 0, 100, provisional=True)
        assert ranges(conn) == [tentative(0, 30), final(30, 60), tentative(60, 100)]
        assert len(rows(conn)) == 3


def test_adding_what_is_already_covered_rewrites_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 100, run=1)
        add(conn, 10, 20, run=2)
        add(conn, 10, 20, provisional=True, run=3)
        stored = conn.execute(select(sales_coverage.c.run_id, sales_coverage.c.recorded_at)).all()
    assert [tuple(row) for row in stored] == [(1, at(100))]


def test_an_empty_range_records_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 10, 10)
        assert rows(conn) == []
        assert coverage.is_covered(conn, location_id="t1", start=at(10), end=at(10))


def test_coverage_is_clipped_to_the_window_asked(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 100)
        add(conn, 100, 200, provisional=True)
        assert ranges(conn, 50, 150) == [final(50, 100), tentative(100, 150)]
        assert ranges(conn, 300, 400) == []


def test_locations_are_covered_independently(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 100, loc="t2")
        assert ranges(conn) == []
        assert not coverage.is_covered(conn, location_id="t1", start=at(0), end=at(100))
        assert coverage.is_covered(conn, location_id="t2", start=at(0), end=at(100))


def test_gaps_are_opening_hours_without_final_coverage_and_flag_provisional_ones(
    engine: Engine,
) -> None:
    day_one, day_two = Interval(at(0), at(840)), Interval(at(1440), at(2280))  # 07:00-21:00
    with engine.begin() as conn:
        add(conn, -60, 300)
        add(conn, 300, 400, provisional=True)
        add(conn, 600, 1500)
        gaps = coverage.uncovered(conn, location_id="t1", within=[day_two, day_one])
    assert gaps == [
        Gap(at(300), at(400), True),
        Gap(at(400), at(600), False),
        Gap(at(1500), at(2280), False),
    ]


def test_is_covered_needs_final_coverage_of_every_instant(engine: Engine) -> None:
    with engine.begin() as conn:
        add(conn, 0, 50)
        add(conn, 50, 100, provisional=True)
        assert coverage.is_covered(conn, location_id="t1", start=at(10), end=at(50))
        assert not coverage.is_covered(conn, location_id="t1", start=at(10), end=at(60))
        add(conn, 50, 100)
        assert coverage.is_covered(conn, location_id="t1", start=at(0), end=at(100))


def test_a_write_is_a_constant_number_of_statements(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(40):
            add(conn, n * 10, n * 10 + 5, provisional=n % 2 == 0)
        with count_statements(engine) as statements:
            add(conn, 0, 400)
        assert rows(conn) == [(at(0), at(400), False)]
    assert len(statements) <= 4  # lock (PostgreSQL), select, delete, insert


def test_concurrent_writers_of_one_location_still_leave_it_compact(engine: Engine) -> None:
    gate = threading.Barrier(10)

    def write(n: int) -> None:
        gate.wait()
        with engine.begin() as conn:
            add(conn, n * 10, n * 10 + 10, run=n)

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(write, range(10)))
    with engine.connect() as conn:
        assert rows(conn) == [(at(0), at(100), False)]


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --- against a model -------------------------------------------------------------------------

ops = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 20), st.booleans()), min_size=1, max_size=8
)
_locations: Iterator[int] = itertools.count()


def minutes(spans: list[tuple[datetime, datetime]]) -> set[int]:
    return {
        m
        for a, b in spans
        for m in range(
            int((a - BASE) / timedelta(minutes=1)), int((b - BASE) / timedelta(minutes=1))
        )
    }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_any_sequence_of_writes_matches_the_model_and_stays_compact(
    engine: Engine, ops: list[tuple[int, int, bool]]
) -> None:
    loc = f"prop{next(_locations)}"
    with engine.begin() as conn:
        for start, length, provisional in ops:
            add(conn, start, start + length, provisional=provisional, loc=loc)
        stored = rows(conn, loc)
        got = coverage.coverage(conn, location_id=loc, start=at(-10), end=at(200))
    want_final = minutes([(at(s), at(s + n)) for s, n, p in ops if not p])
    want_tentative = minutes([(at(s), at(s + n)) for s, n, p in ops if p]) - want_final
    assert minutes([(r.start, r.end) for r in got if not r.provisional]) == want_final
    assert minutes([(r.start, r.end) for r in got if r.provisional]) == want_tentative
    assert sorted((r.start, r.end, r.provisional) for r in got) == stored  # nothing to compact
    for kind in (False, True):
        same = [(a, b) for a, b, p in stored if p is kind]
        assert all(b1 < a2 for (_, b1), (a2, _) in pairwise(same))  # disjoint, not touching
