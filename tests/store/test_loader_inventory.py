"""Inventory, products, locations and history retention on both dialects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import DBAPIError
from store_builders import catalogue, catalogue_item, flush_pg_stats, pg_writes, row_versions

from fluxion_etl.config import load_config
from fluxion_etl.domain.records import CatalogueItem
from fluxion_etl.store.catalogue_digests import CatalogueDigest
from fluxion_etl.store.inventory_loader import (
    InventoryResult,
    apply_inventory,
    load_inventory,
    stage_inventory,
    upsert_products,
)
from fluxion_etl.store.loader import purge_history, upsert_locations
from fluxion_etl.store.schema import (
    catalogue_digests,
    inventory_current,
    inventory_history,
    locations,
    products,
)

T1 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=30)
T3 = T2 + timedelta(minutes=30)


def load(
    engine: Engine,
    items: Sequence[CatalogueItem],
    *,
    warehouse: str = "APP-TPF",
    location: str = "tienda_01",
    run_id: int = 1,
    now: datetime = T1,
    apply_disappearances: bool = True,
) -> InventoryResult:
    with engine.begin() as conn:
        result = load_inventory(
            conn,
            location_id=location,
            warehouse_code=warehouse,
            items=items,
            run_id=run_id,
            now=now,
            apply_disappearances=apply_disappearances,
        )
        flush_pg_stats(conn)
    return result


def current(
    engine: Engine, warehouse: str = "APP-TPF", location: str = "tienda_01"
) -> dict[str, Any]:
    c = inventory_current.c
    query = select(c.sku, c.stock, c.price_usd, c.tax_rate, c.updated_at, c.run_id).where(
        c.location_id == location, c.warehouse_code == warehouse
    )
    with engine.connect() as conn:
        return {row.sku: tuple(row)[1:] for row in conn.execute(query)}


def history(engine: Engine) -> list[tuple[Any, ...]]:
    h = inventory_history.c
    query = select(h.sku, h.change, h.old_stock, h.new_stock, h.changed_at, h.run_id).order_by(h.id)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_a_first_catalogue_is_stored_exactly_with_appeared_history(engine: Engine) -> None:
    items = [*catalogue(20), catalogue_item(99, stock=Decimal("-2.375"), price_usd=Decimal("0"))]

    result = load(engine, items)

    assert result == InventoryResult(
        inserted=21, updated=0, unchanged=0, disappeared=0, history_rows=21
    )
    stored = current(engine)
    assert {sku: row[:3] for sku, row in stored.items()} == {
        i.sku: (i.stock, i.price_usd, i.tax_rate) for i in items
    }
    assert stored["000099"][0] == Decimal("-2.375")
    assert {row[1] for row in history(engine)} == {"appeared"}
    assert ("000099", "appeared", None, Decimal("-2.375"), T1, 1) in history(engine)


def test_an_identical_catalogue_writes_nothing(engine: Engine) -> None:
    items = catalogue(200)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        initial = pg_writes(engine, "inventory_current")
    load(engine, items)
    before, logged = current(engine), history(engine)
    if postgres:
        versions = row_versions(engine, "inventory_current", "sku")
        counters = pg_writes(engine, "inventory_current")
        assert counters[0] - initial[0] == 200  # the counters are live

    result = load(engine, list(reversed(items)), run_id=2, now=T2)

    assert result == InventoryResult(
        inserted=0, updated=0, unchanged=200, disappeared=0, history_rows=0
    )
    assert current(engine) == before
    assert history(engine) == logged
    if postgres:
        assert row_versions(engine, "inventory_current", "sku") == versions
        assert pg_writes(engine, "inventory_current") == counters


def test_history_records_stock_changes_appearances_and_disappearances(engine: Engine) -> None:
    items = catalogue(10)
    load(engine, items)
    changed_stock = replace(items[1], stock=items[1].stock + Decimal("0.5"))
    changed_price = replace(items[2], price_usd=items[2].price_usd + 1)
    newcomer = catalogue_item(500)
    second = [items[0], changed_stock, changed_price, *items[3:9], newcomer]  # items[9] gone

    result = load(engine, second, run_id=2, now=T2)

    assert result == InventoryResult(
        inserted=1, updated=2, unchanged=7, disappeared=1, history_rows=3
    )
    assert history(engine)[10:] == [
        (changed_stock.sku, "changed", items[1].stock, changed_stock.stock, T2, 2),
        (newcomer.sku, "appeared", None, newcomer.stock, T2, 2),
        (items[9].sku, "disappeared", items[9].stock, None, T2, 2),
    ]
    stored = current(engine)
    assert items[9].sku not in stored
    assert stored[changed_price.sku][1] == changed_price.price_usd  # price updated, no history
    assert stored[changed_price.sku][3:] == (T2, 2)
    assert stored[items[0].sku][3:] == (T1, 1)  # untouched


def stage(conn: Connection, items: Sequence[CatalogueItem], warehouse: str = "APP-TPF") -> Any:
    return stage_inventory(
        conn, location_id="tienda_01", warehouse_code=warehouse, items=items, run_id=2, now=T2
    )


def test_the_stage_counts_what_would_disappear_before_anything_disappears(engine: Engine) -> None:
    load(engine, catalogue(100))
    with engine.begin() as conn:
        staged = stage(conn, catalogue(94, start=6))
        assert (staged.staged, staged.current_total, staged.disappearing) == (94, 100, 6)
        held = apply_inventory(conn, staged, apply_disappearances=False)

    assert held == InventoryResult(
        inserted=0, updated=0, unchanged=94, disappeared=6, history_rows=0
    )
    assert len(current(engine)) == 100  # held back: nothing removed
    assert [row for row in history(engine) if row[1] == "disappeared"] == []


def test_disappearances_are_scoped_to_one_warehouse_of_one_location(engine: Engine) -> None:
    load(engine, catalogue(10), warehouse="APP-TPF")
    load(engine, catalogue(10), warehouse="PRINCIPAL")
    load(engine, catalogue(10), location="tienda_02")

    result = load(engine, catalogue(3), warehouse="APP-TPF", run_id=2)

    assert result.disappeared == 7
    assert len(current(engine, "APP-TPF")) == 3
    assert len(current(engine, "PRINCIPAL")) == 10
    assert len(current(engine, location="tienda_02")) == 10


def test_an_empty_catalogue_makes_everything_disappear(engine: Engine) -> None:
    load(engine, catalogue(5))
    with engine.begin() as conn:
        staged = stage(conn, [])
    assert (staged.current_total, staged.disappearing) == (5, 5)


def test_duplicate_skus_in_a_catalogue_count_once_and_the_last_wins(engine: Engine) -> None:
    first = catalogue_item(1)
    last = replace(first, stock=Decimal("42"))
    result = load(engine, [first, catalogue_item(2), last])
    assert (result.inserted, result.history_rows) == (2, 2)
    assert current(engine)[first.sku][0] == Decimal("42")


def test_applying_a_superseded_stage_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        first = stage(conn, catalogue(3), warehouse="A")
        stage(conn, catalogue(2), warehouse="B")
        with pytest.raises(RuntimeError, match="replaced by a later stage_inventory"):
            apply_inventory(conn, first)


def test_several_warehouses_load_in_one_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        for code, count in (("A", 4), ("B", 6)):
            apply_inventory(conn, stage(conn, catalogue(count), warehouse=code))
    assert (len(current(engine, "A")), len(current(engine, "B"))) == (4, 6)


def statements_to_load(engine: Engine, executed: list[str], items: list[CatalogueItem]) -> int:
    executed.clear()
    with engine.begin() as conn:
        load_inventory(
            conn, location_id="tienda_01", warehouse_code="W", items=items, run_id=2, now=T2
        )
    return len([s for s in executed if not s.startswith("BEGIN")])


def test_an_inventory_load_runs_the_same_statements_whatever_its_size(
    engine: Engine, executed: list[str]
) -> None:
    def with_changes(items: list[CatalogueItem]) -> list[CatalogueItem]:
        """One new, one changed stock, one gone: every path of the load runs."""
        return [replace(items[0], stock=items[0].stock + 1), *items[1:-1], catalogue_item(9999)]

    load(engine, catalogue(10), warehouse="W")
    load(engine, catalogue(10), warehouse="W")  # a reload: the session has its stage from now on
    small = statements_to_load(engine, executed, with_changes(catalogue(10)))
    load(engine, catalogue(1000), warehouse="W")
    large = statements_to_load(engine, executed, with_changes(catalogue(1000)))
    # SQLite: create stage, empty it, fill, count disappearing, count changes, history of
    # changes, upsert, history of disappeared, delete disappeared, and the catalogue digest
    # deleted (none given). PostgreSQL: is anything stored, is a digest on file and is the stage
    # there (in place of creating it), the merge, the removal; it empties the stage at commit,
    # COPY goes to the driver, and no digest is on file to delete.
    assert small == large == {"postgresql": 3, "sqlite": 10}[engine.dialect.name]


def test_a_reload_without_disappearances_runs_the_baseline_statements_on_postgres(
    engine: Engine, executed: list[str]
) -> None:
    """Ask whether anything is stored, a digest is on file and the stage exists (in place of
    creating it), merge: the shape of the COPY + merge baseline. With no digest on file and none
    given (``store.catalogue_digests``), nothing more."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the statement shape of the PostgreSQL loader")
    items = catalogue(50)
    load(engine, items, warehouse="W")
    load(engine, items, warehouse="W")  # a reload: the session has its stage from now on
    changed = [replace(items[0], stock=items[0].stock + 1), *items[1:], catalogue_item(900)]
    assert statements_to_load(engine, executed, changed) == 2


def digests(engine: Engine) -> dict[tuple[str, str], str]:
    d = catalogue_digests.c
    with engine.connect() as conn:
        rows = conn.execute(select(d.location_id, d.warehouse_code, d.digest))
        return {(row.location_id, row.warehouse_code): row.digest for row in rows}


def test_a_load_without_a_digest_deletes_the_one_on_file_and_no_other(
    engine: Engine, executed: list[str]
) -> None:
    """A digest on file describes what is stored, so a load that brings none deletes it.
    PostgreSQL asks whether one is on file with its first question, and deletes only then."""
    items = catalogue(5)
    for warehouse, digest in (("W", "d1"), ("W2", "d2")):
        with engine.begin() as conn:
            staged = stage_inventory(
                conn, location_id="tienda_01", warehouse_code=warehouse, items=items, run_id=1,
                now=T1,
            )  # fmt: skip
            apply_inventory(conn, staged, digest=CatalogueDigest(digest, articles=5, fetched=5))
    assert digests(engine) == {("tienda_01", "W"): "d1", ("tienda_01", "W2"): "d2"}

    statements_to_load(engine, executed, [replace(items[0], stock=items[0].stock + 1), *items[1:]])
    assert digests(engine) == {("tienda_01", "W2"): "d2"}
    assert len([s for s in executed if s.startswith("DELETE FROM catalogue_digests")]) == 1

    statements_to_load(engine, executed, items)  # none on file now
    deletes = [s for s in executed if s.startswith("DELETE FROM catalogue_digests")]
    assert len(deletes) == {"postgresql": 0, "sqlite": 1}[engine.dialect.name]
    assert digests(engine) == {("tienda_01", "W2"): "d2"}


def test_a_held_catalogue_writes_its_changes_with_exact_counts_and_removes_nothing(
    engine: Engine,
) -> None:
    items = catalogue(20)
    load(engine, items)
    changed_stock = replace(items[0], stock=items[0].stock + 1)
    changed_price = replace(items[1], price_usd=items[1].price_usd + 1)
    second = [changed_stock, changed_price, *items[2:14], catalogue_item(700)]  # 6 of 20 gone

    with engine.begin() as conn:
        staged = stage(conn, second)
        assert (staged.staged, staged.current_total, staged.disappearing) == (15, 20, 6)
        held = apply_inventory(conn, staged, apply_disappearances=False)

    assert held == InventoryResult(
        inserted=1, updated=2, unchanged=12, disappeared=6, history_rows=2
    )
    stored = current(engine)
    assert len(stored) == 21, "the six vanished articles are kept"
    assert stored[changed_stock.sku][0] == changed_stock.stock
    assert stored[changed_price.sku][1] == changed_price.price_usd
    assert {(row[0], row[1]) for row in history(engine)[20:]} == {
        (changed_stock.sku, "changed"),
        ("000700", "appeared"),
    }

    applied = load(engine, second, run_id=3, now=T3)

    assert applied == InventoryResult(
        inserted=0, updated=0, unchanged=15, disappeared=6, history_rows=6
    )
    assert set(current(engine)) == {item.sku for item in second}
    gone = [row for row in history(engine) if row[1] == "disappeared"]
    assert [row[0] for row in gone] == [item.sku for item in items[14:]]
    assert all(row[4:] == (T3, 3) for row in gone)
    assert [row[2] for row in gone] == [item.stock for item in items[14:]]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"sku": None}, id="null-sku"),
        pytest.param({"stock": None}, id="null-stock-of-a-new-article"),
    ],
)
def test_one_bad_article_fails_the_whole_catalogue_and_leaves_earlier_data(
    engine: Engine, bad: dict[str, object]
) -> None:
    items = catalogue(10)
    load(engine, items)
    before, logged = current(engine), history(engine)
    batch = [
        replace(items[0], stock=items[0].stock + 5),  # a change that must not survive
        *items[1:7],  # three vanish: that must not survive either
        catalogue_item(300),
        replace(catalogue_item(400), **bad),  # type: ignore[arg-type]
    ]

    with pytest.raises(DBAPIError):
        load(engine, batch, run_id=2, now=T2)

    assert current(engine) == before
    assert history(engine) == logged


# --- products ------------------------------------------------------------------------------------


def test_products_are_upserted_once_per_sku_and_only_when_changed(engine: Engine) -> None:
    items = catalogue(50)
    with engine.begin() as conn:
        assert upsert_products(conn, [*items, *items], T1) == 50
    with engine.begin() as conn:
        assert upsert_products(conn, items, T2) == 0
    renamed = replace(items[3], name="NUEVO NOMBRE", brand=None)
    with engine.begin() as conn:
        assert upsert_products(conn, [*items, renamed], T3) == 1

    with engine.connect() as conn:
        rows = {r.sku: r for r in conn.execute(select(products))}
    assert len(rows) == 50
    assert (rows[renamed.sku].name, rows[renamed.sku].brand) == ("NUEVO NOMBRE", None)
    assert rows[renamed.sku].updated_at == T3
    assert rows[items[0].sku].updated_at == T1
    assert rows[items[0].sku].tax_rate == items[0].tax_rate


def test_no_products_no_statements(engine: Engine, executed: list[str]) -> None:
    with engine.begin() as conn:
        assert upsert_products(conn, [], T1) == 0
    assert [s for s in executed if not s.startswith("BEGIN")] == []


# --- locations and retention ----------------------------------------------------------------------


def test_locations_mirror_the_configuration(engine: Engine) -> None:
    configured = load_config(None).locations
    with engine.begin() as conn:
        assert upsert_locations(conn, configured, T1) == len(configured)
    with engine.begin() as conn:
        assert upsert_locations(conn, configured, T2) == 0

    renamed = replace(configured[0], name="NUEVO NOMBRE")
    with engine.begin() as conn:
        assert upsert_locations(conn, [renamed, *configured[1:-1]], T3) == 2

    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(locations))}
    assert len(rows) == len(configured)
    assert (rows[renamed.id].name, rows[renamed.id].updated_at) == ("NUEVO NOMBRE", T3)
    assert rows[configured[-1].id].active is False
    assert rows[configured[1].id].updated_at == T1
    assert rows[configured[1].id].warehouses == [
        {"code": w.code, "role": w.role.value, "name": w.name} for w in configured[1].warehouses
    ]


def test_history_retention_deletes_only_older_rows(engine: Engine) -> None:
    row = {"location_id": "t", "warehouse_code": "W", "sku": "1", "change": "changed"}
    with engine.begin() as conn:
        conn.execute(
            insert(inventory_history),
            [row | {"changed_at": T1 - timedelta(days=d)} for d in (100, 91, 89, 1)],
        )
    with engine.begin() as conn:
        assert purge_history(conn, older_than=T1 - timedelta(days=90)) == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(inventory_history)).scalar_one() == 2
