"""Sales loads on both dialects: exact round trip, idempotent reloads, all-or-nothing, voids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Date, Engine, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError
from store_builders import (
    OPENING,
    flush_pg_stats,
    pg_writes,
    row_versions,
    sales_line,
    sales_lines,
)

from fluxion_etl.domain.records import SalesLine
from fluxion_etl.store.db import downgrade, upgrade
from fluxion_etl.store.sales_loader import (
    LoadResult,
    delete_missing_sales,
    known_lines,
    load_sales,
)
from fluxion_etl.store.schema import sales_lines as sales_table
from fluxion_etl.store.types import UtcDateTime

LOADED = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
LATER = LOADED + timedelta(hours=1)


def load(
    engine: Engine,
    lines: Sequence[SalesLine],
    *,
    location: str = "tienda_01",
    run_id: int = 1,
    now: datetime = LOADED,
) -> LoadResult:
    with engine.begin() as conn:
        result = load_sales(conn, location_id=location, lines=lines, run_id=run_id, now=now)
        flush_pg_stats(conn)
    return result


def stored(engine: Engine, location: str = "tienda_01") -> list[SalesLine]:
    columns = [sales_table.c[f.name] for f in fields(SalesLine)]
    query = (
        select(*columns)
        .where(sales_table.c.location_id == location)
        .order_by(sales_table.c.invoice_number, sales_table.c.line_number)
    )
    with engine.connect() as conn:
        return [SalesLine(**row._mapping) for row in conn.execute(query)]


def stamps(engine: Engine) -> dict[tuple[str, int], tuple[datetime, int]]:
    """(loaded_at, run_id) per key: what a rewrite would change."""
    query = select(
        sales_table.c.invoice_number,
        sales_table.c.line_number,
        sales_table.c.loaded_at,
        sales_table.c.run_id,
    )
    with engine.connect() as conn:
        return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(query)}


def test_every_field_round_trips_exactly(engine: Engine) -> None:
    lines = [
        *sales_lines(40),
        sales_line(
            1000,
            quantity=Decimal("-0.125"),  # a return-like negative, fractional weight
            unit_price_bs=Decimal("123456789012.12345678"),
            exchange_rate=Decimal("0.00000001"),
            total_bs=Decimal("0"),
            sold_at=datetime(2026, 1, 6, 3, 59, 59, 999999, tzinfo=UTC),  # 23:59 in Caracas
            product_description="ÑAME 'criollo'\tcon\\barra\nnueva línea",
            brand=None,
            promotion_code=None,
        ),
    ]
    assert load(engine, lines) == LoadResult(inserted=41, updated=0, unchanged=0)

    back = stored(engine)
    expected = sorted(lines, key=lambda line: line.key)
    assert back == expected
    for got, want in zip(back, expected, strict=True):
        assert got.sold_at.utcoffset() == timedelta(0)
        assert got.sold_at == want.sold_at
        assert isinstance(got.quantity, Decimal)


def test_reloading_identical_lines_rewrites_nothing(engine: Engine) -> None:
    lines = sales_lines(300)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        initial = pg_writes(engine, "sales_lines")
    load(engine, lines, run_id=1)
    before_stamps = stamps(engine)
    if postgres:
        versions = row_versions(engine, "sales_lines", "id")
        counters = pg_writes(engine, "sales_lines")
        assert counters[0] - initial[0] == 300  # the counters are live

    again = load(engine, list(reversed(lines)), run_id=2, now=LATER)

    assert again == LoadResult(inserted=0, updated=0, unchanged=300)
    assert stamps(engine) == before_stamps
    if postgres:
        assert row_versions(engine, "sales_lines", "id") == versions
        assert pg_writes(engine, "sales_lines") == counters


def test_sqlite_reload_changes_no_row(sqlite_url: str) -> None:
    from fluxion_etl.store.db import create_db_engine, upgrade

    engine = create_db_engine(sqlite_url)
    upgrade(engine)
    lines = sales_lines(200)
    try:
        load(engine, lines)
        with engine.begin() as conn:
            driver = conn.connection.driver_connection
            before = driver.total_changes  # type: ignore[union-attr]
            load_sales(conn, location_id="tienda_01", lines=lines, run_id=2, now=LATER)
            assert driver.total_changes == before  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_a_changed_line_is_counted_updated_and_only_it_is_rewritten(engine: Engine) -> None:
    lines = sales_lines(50)
    load(engine, lines, run_id=1)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        versions = row_versions(engine, "sales_lines", "invoice_number || '/' || line_number")
    changed = replace(lines[7], quantity=lines[7].quantity + 1, total_usd=Decimal("99.99"))
    new = sales_line(5000)

    result = load(engine, [*lines[:7], changed, *lines[8:], new], run_id=2, now=LATER)

    assert result == LoadResult(inserted=1, updated=1, unchanged=49)
    back = {line.key: line for line in stored(engine)}
    assert back[changed.key] == changed
    assert back[new.key] == new
    after = stamps(engine)
    assert after[changed.key] == (LATER, 2)
    assert after[lines[0].key] == (LOADED, 1)
    if postgres:
        now_versions = row_versions(engine, "sales_lines", "invoice_number || '/' || line_number")
        rewritten = {k for k, v in versions.items() if now_versions[k] != v}
        assert rewritten == {f"{changed.invoice_number}/{changed.line_number}"}


def test_a_null_becoming_a_value_counts_as_a_change(engine: Engine) -> None:
    line = sales_line(1, brand=None)
    load(engine, [line])
    assert load(engine, [replace(line, brand="NUEVA")]).updated == 1
    assert load(engine, [replace(line, brand=None)]).updated == 1


def test_a_fingerprint_is_written_with_changed_values_and_never_alone(engine: Engine) -> None:
    """Another fingerprint for the same values (KLK sent other bytes for them) changes nothing
    and counts as unchanged; with changed values it is written with them. So a stored
    fingerprint always names bytes that decode to the stored values."""
    line = replace(sales_line(1), fingerprint=111)
    load(engine, [line], run_id=1)

    same_values = load(engine, [replace(line, fingerprint=222)], run_id=2, now=LATER)
    assert same_values == LoadResult(inserted=0, updated=0, unchanged=1)
    assert stored(engine) == [line]
    assert stamps(engine)[line.key] == (LOADED, 1)

    changed = replace(line, total_usd=Decimal("7.5"), fingerprint=333)
    assert load(engine, [changed], run_id=3, now=LATER).updated == 1
    assert stored(engine) == [changed]


def test_known_lines_are_the_fingerprints_of_the_window_with_their_keys(engine: Engine) -> None:
    start = OPENING
    inside = [replace(sales_line(n), fingerprint=n * 10) for n in (1, 2, 3)]
    unprinted = replace(sales_line(4), fingerprint=None)
    later = replace(sales_line(5, sold_at=start + timedelta(hours=5)), fingerprint=50)
    twins = [replace(sales_line(n), fingerprint=77) for n in (6, 7)]  # only a hand edit does it
    load(engine, [*inside, unprinted, later, *twins])
    load(engine, [replace(sales_line(8), fingerprint=80)], location="tienda_02")

    with engine.connect() as conn:
        known = known_lines(
            conn, location_id="tienda_01", start=start, end=start + timedelta(hours=2)
        )

    assert known.by_fingerprint == {line.fingerprint: line.key for line in inside}


def test_duplicates_in_one_batch_are_stored_once_and_the_last_wins(engine: Engine) -> None:
    first = sales_line(3)
    last = replace(first, quantity=Decimal("9"))

    result = load(engine, [first, sales_line(4), last])

    assert result == LoadResult(inserted=2, updated=0, unchanged=0)
    assert [line.quantity for line in stored(engine) if line.key == first.key] == [Decimal("9")]


def test_the_same_invoice_in_two_locations_is_two_lines(engine: Engine) -> None:
    lines = sales_lines(10)
    load(engine, lines, location="tienda_01")
    assert load(engine, lines, location="tienda_02").inserted == 10
    assert stored(engine, "tienda_01") == stored(engine, "tienda_02")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"sku": None}, id="null-in-not-null-column"),
        pytest.param({"total_usd": None}, id="null-amount"),
    ],
)
def test_one_bad_line_fails_the_whole_load_and_leaves_earlier_data(
    engine: Engine, bad: dict[str, object]
) -> None:
    earlier = sales_lines(20)
    load(engine, earlier)
    batch = [
        replace(earlier[0], quantity=Decimal("77")),  # a change that must not survive
        *sales_lines(30, start=100),  # new lines, before the bad one
        replace(sales_line(500), **bad),  # type: ignore[arg-type]
        *sales_lines(5, start=600),
    ]

    with pytest.raises(DBAPIError):
        load(engine, batch)

    assert stored(engine) == sorted(earlier, key=lambda line: line.key)


def test_a_value_too_long_fails_the_load_on_postgres(pg_url: str) -> None:
    from fluxion_etl.store.db import create_db_engine, upgrade

    engine = create_db_engine(pg_url)
    upgrade(engine)
    try:
        load(engine, sales_lines(5))
        with pytest.raises(DBAPIError, match="too long"):
            load(engine, [*sales_lines(5, start=10), sales_line(99, invoice_number="X" * 65)])
        assert len(stored(engine)) == 5
    finally:
        engine.dispose()


def test_an_empty_batch_runs_no_statement(engine: Engine, executed: list[str]) -> None:
    assert statements_to_load(engine, executed, []) == 0


def without_begin(statements: list[str]) -> list[str]:
    return [s for s in statements if not s.startswith("BEGIN")]


def statements_to_load(engine: Engine, executed: list[str], lines: list[SalesLine]) -> int:
    executed.clear()
    with engine.begin() as conn:
        load_sales(conn, location_id="tienda_01", lines=lines, run_id=2, now=LATER)
    return len(without_begin(executed))


def test_a_load_runs_the_same_statements_whatever_its_size(
    engine: Engine, executed: list[str]
) -> None:
    load(engine, sales_lines(5))
    load(engine, sales_lines(500, start=1000))
    # Half already stored, half new, so both the insert and the skip paths run.
    small = statements_to_load(engine, executed, sales_lines(10))
    large = statements_to_load(engine, executed, sales_lines(1000, start=1000))
    assert small == large == STATEMENTS_PER_LOAD[engine.dialect.name]


# As seen by SQLAlchemy, BEGIN aside:
# PostgreSQL: create stage (emptied at every commit), one upsert that counts what it inserted
# and updated; the COPY goes straight to the driver (one more).
# SQLite: max(id), the executemany upsert (one statement), count of new ids.
STATEMENTS_PER_LOAD = {"postgresql": 2, "sqlite": 3}


# --- voids ---------------------------------------------------------------------------------------


def day_lines() -> list[SalesLine]:
    """A line every 30 min from 07:00 local (11:00 UTC): keys F00000000/1 .. F00000007/4."""
    return [sales_line(n, sold_at=OPENING + timedelta(minutes=30 * n)) for n in range(32)]


def test_voids_are_lines_of_the_window_missing_from_the_source(engine: Engine) -> None:
    lines = day_lines()
    load(engine, lines, location="tienda_01")
    load(engine, lines, location="tienda_02")  # same invoice numbers in another store
    start, end = lines[4].sold_at, lines[20].sold_at  # [start, end): lines 4..19
    voided = {lines[4].key, lines[10].key, lines[19].key}
    keep = {line.key for line in lines} - voided - {lines[2].key, lines[20].key}  # outside

    with engine.begin() as conn:
        counted = delete_missing_sales(
            conn, location_id="tienda_01", start=start, end=end, keep_keys=keep, apply=False
        )
    assert counted == 3
    assert len(stored(engine)) == 32  # counting deletes nothing

    with engine.begin() as conn:
        deleted = delete_missing_sales(
            conn, location_id="tienda_01", start=start, end=end, keep_keys=keep, apply=True
        )
    assert deleted == 3
    assert {line.key for line in stored(engine)} == {line.key for line in lines} - voided
    assert stored(engine, "tienda_02") == lines


def test_with_no_keys_kept_every_line_of_the_window_is_missing(engine: Engine) -> None:
    lines = day_lines()
    load(engine, lines)
    with engine.begin() as conn:
        missing = delete_missing_sales(
            conn,
            location_id="tienda_01",
            start=lines[0].sold_at,
            end=lines[-1].sold_at + timedelta(microseconds=1),
            keep_keys=(),
            apply=False,
        )
    assert missing == 32


def statements_to_find_voids(engine: Engine, executed: list[str], size: int) -> int:
    lines = sales_lines(size)
    load(engine, lines)
    executed.clear()
    with engine.begin() as conn:
        delete_missing_sales(
            conn,
            location_id="tienda_01",
            start=OPENING,
            end=OPENING + timedelta(days=1),
            keep_keys={line.key for line in lines[1:]},
            apply=True,
        )
    return len(without_begin(executed))


def test_void_detection_runs_the_same_statements_whatever_its_size(
    engine: Engine, executed: list[str]
) -> None:
    small = statements_to_find_voids(engine, executed, 10)
    large = statements_to_find_voids(engine, executed, 1000)
    assert small == large == VOID_STATEMENTS[engine.dialect.name]


# create stage, (SQLite: empty it, executemany of keys; PostgreSQL: COPY, emptied at commit),
# delete.
VOID_STATEMENTS = {"postgresql": 2, "sqlite": 4}


def test_loads_count_within_the_callers_transaction(engine: Engine) -> None:
    """Nothing is committed by the loader: a caller's rollback undoes the load."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            load_sales(conn, location_id="t", lines=sales_lines(5), run_id=1, now=LOADED)
            tx.rollback()
        count = conn.execute(select(func.count()).select_from(sales_table)).scalar_one()
    assert count == 0


def test_the_fingerprint_migration_keeps_every_line_and_its_downgrade_drops_only_the_column(
    engine: Engine,
) -> None:
    """Migration 0006 on a table that holds lines: they keep every value and have no fingerprint
    (loaded again unchanged, they are not rewritten for one); the downgrade keeps them too."""
    downgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sales_lines (location_id, invoice_number, line_number, sold_at, "
                "business_day, sku, warehouse_code, quantity, total_bs, total_usd, is_non_fiscal, "
                "has_promotion, loaded_at) VALUES ('tienda_01', 'F1', 1, :at, :day, '000001', "
                "'APP-TPF', 2, 10, 1, false, false, :at)"
            ).bindparams(bindparam("at", type_=UtcDateTime()), bindparam("day", type_=Date())),
            {"at": LOADED, "day": LOADED.date()},
        )
    upgrade(engine)

    with engine.connect() as conn:
        kept = conn.execute(select(sales_table.c.quantity, sales_table.c.fingerprint)).one()
    assert tuple(kept) == (Decimal(2), None)
    same = SalesLine(
        **{f.name: None for f in fields(SalesLine)},  # type: ignore[arg-type]
    )
    same = replace(
        same,
        invoice_number="F1",
        line_number=1,
        sold_at=LOADED,
        business_day=LOADED.date(),
        sku="000001",
        warehouse_code="APP-TPF",
        quantity=Decimal(2),
        total_bs=Decimal(10),
        total_usd=Decimal(1),
        is_non_fiscal=False,
        has_promotion=False,
        fingerprint=42,
    )
    assert load(engine, [same], run_id=9, now=LATER) == LoadResult(0, 0, 1)
    assert stamps(engine)[same.key] == (LOADED, None), "not rewritten for a fingerprint"
    downgrade(engine, "0005")
    with engine.connect() as conn:
        columns = conn.execute(text("SELECT * FROM sales_lines")).keys()
        assert "fingerprint" not in columns
        assert conn.execute(text("SELECT count(*) FROM sales_lines")).scalar_one() == 1
    upgrade(engine)
