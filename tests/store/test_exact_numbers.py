"""KLK's numbers are stored with every digit sent, on both dialects (SPEC §4.7, migration 0005)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select, text
from store_builders import catalogue_item, sales_line

from fluxion_etl.store.db import downgrade, upgrade
from fluxion_etl.store.inventory_loader import load_inventory
from fluxion_etl.store.sales_loader import load_sales
from fluxion_etl.store.schema import inventory_current, inventory_history, sales_lines

T1 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=30)

# A float left over by KLK's database, a rate with 12 decimals, the smallest value accepted.
LEFTOVER = Decimal("0.30000000000000004")
RATE = Decimal("36.123456789012")
TINY = Decimal("1E-12")
WIDE = Decimal("123456789012345.123456789012")


def _stored_stock(engine: Engine) -> dict[str, tuple[Decimal, Decimal]]:
    c = inventory_current.c
    with engine.connect() as conn:
        return {
            r.sku: (r.stock, r.price_usd) for r in conn.execute(select(c.sku, c.stock, c.price_usd))
        }


def _load(engine: Engine, items: list, now: datetime) -> tuple[int, int]:  # type: ignore[type-arg]
    with engine.begin() as conn:
        result = load_inventory(
            conn, location_id="tienda_01", warehouse_code="APP-TPF", items=items, run_id=None,
            now=now,
        )  # fmt: skip
    return result.inserted, result.updated


def test_inventory_keeps_every_decimal_through_first_load_and_merge(engine: Engine) -> None:
    first = [
        catalogue_item(1, stock=LEFTOVER, price_usd=RATE),
        catalogue_item(2, stock=TINY, price_usd=WIDE),
        catalogue_item(3),
    ]
    assert _load(engine, first, T1) == (3, 0)  # PostgreSQL: copied straight in
    stored = _stored_stock(engine)
    assert stored["000001"] == (LEFTOVER, RATE)
    assert stored["000002"] == (TINY, WIDE)
    assert str(stored["000001"][0].normalize()) == "0.30000000000000004"

    # The same values again write nothing; one more digit is a change, through the merge.
    assert _load(engine, first, T2) == (0, 0)
    moved = Decimal("0.300000000000000041")
    assert _load(engine, [catalogue_item(1, stock=moved, price_usd=RATE), *first[1:]], T2) == (0, 1)
    assert _stored_stock(engine)["000001"] == (moved, RATE)
    h = inventory_history.c
    with engine.connect() as conn:
        changed = conn.execute(select(h.old_stock, h.new_stock).where(h.change == "changed")).one()
    assert tuple(changed) == (LEFTOVER, moved)


def test_sales_lines_keep_every_decimal(engine: Engine) -> None:
    line = sales_line(
        1, exchange_rate=RATE, unit_price_usd=LEFTOVER, discount_rate=TINY, total_bs=WIDE
    )
    with engine.begin() as conn:
        load_sales(conn, location_id="tienda_01", lines=[line], run_id=None, now=T1)
    s = sales_lines.c
    query = select(s.exchange_rate, s.unit_price_usd, s.discount_rate, s.total_bs)
    with engine.connect() as conn:
        assert tuple(conn.execute(query).one()) == (RATE, LEFTOVER, TINY, WIDE)
    with engine.begin() as conn:  # loaded again: nothing differs, nothing is written
        again = load_sales(conn, location_id="tienda_01", lines=[line], run_id=None, now=T2)
    assert (again.inserted, again.updated) == (0, 0)


def test_the_migration_drops_the_limit_and_its_downgrade_restores_it(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite stores these columns as text before and after

    def scales() -> set[tuple[str, object]]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT column_name, numeric_scale FROM information_schema.columns "
                    "WHERE table_name = 'sales_lines' AND data_type = 'numeric'"
                )
            )
            return {(r[0], r[1]) for r in rows}

    assert len(scales()) == 23  # the money, quantity and rate columns of a sales line
    assert {scale for _, scale in scales()} == {None}
    downgrade(engine, "0004")
    assert {scale for _, scale in scales()} == {8}
    upgrade(engine)
    assert {scale for _, scale in scales()} == {None}
