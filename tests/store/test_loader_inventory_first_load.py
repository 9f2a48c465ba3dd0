"""PostgreSQL copies the first catalogue of a warehouse straight in: the same rows as the merge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from store_builders import catalogue, catalogue_item

from fluxion_etl.domain.records import CatalogueItem
from fluxion_etl.store.catalogue_digests import CatalogueDigest
from fluxion_etl.store.inventory_loader import InventoryResult, apply_inventory, stage_inventory
from fluxion_etl.store.schema import catalogue_digests, inventory_current, inventory_history

# Caracas time on purpose: what is stored is the UTC instant either way.
T1 = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=ZoneInfo("America/Caracas"))
T2 = T1 + timedelta(minutes=30)


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("the first-load COPY is PostgreSQL's")
    return engine


def load(
    engine: Engine,
    items: Sequence[CatalogueItem],
    *,
    location: str,
    run_id: int,
    now: datetime,
    copy_first_load: bool = True,
) -> tuple[InventoryResult, tuple[int, int, int]]:
    """The result, and (current_total, disappearing, staged) as the stage saw them."""
    with engine.begin() as conn:
        staged = stage_inventory(
            conn,
            location_id=location,
            warehouse_code="APP-TPF",
            items=items,
            run_id=run_id,
            now=now,
            copy_first_load=copy_first_load,
        )
        result = apply_inventory(conn, staged)
    return result, (staged.current_total, staged.disappearing, staged.staged)


def stored(engine: Engine, location: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of both tables for one location but the location and the history id."""
    c, h = inventory_current.c, inventory_history.c
    current = select(*(col for col in inventory_current.c if col.name != "location_id")).where(
        c.location_id == location
    )
    history = (
        select(*(col for col in inventory_history.c if col.name not in ("id", "location_id")))
        .where(h.location_id == location)
        .order_by(h.sku, h.changed_at, h.change)
    )
    with engine.connect() as conn:
        return (
            sorted(tuple(row) for row in conn.execute(current)),
            [tuple(row) for row in conn.execute(history)],
        )


def awkward_catalogue() -> list[CatalogueItem]:
    items = catalogue(300)
    return [
        *items,
        catalogue_item(900, tax_rate=None, stock=Decimal("-2.375")),
        catalogue_item(901, stock=Decimal("1.123456789"), price_usd=Decimal("1E+3")),  # rounded
        catalogue_item(902, stock=Decimal("-0"), price_usd=Decimal("0.00000000")),
        catalogue_item(903, fingerprint=-(2**63)),  # the fingerprints' extremes
        catalogue_item(904, fingerprint=2**63 - 1),
        replace(items[5], stock=Decimal("77.5")),  # a duplicate sku: the last wins
    ]


def test_a_copied_first_load_stores_exactly_what_the_merge_stores(
    pg: Engine, executed: list[str]
) -> None:
    items = awkward_catalogue()

    executed.clear()
    copied = load(pg, items, location="copied", run_id=7, now=T1)
    copy_statements = list(executed)
    merged = load(pg, items, location="merged", run_id=7, now=T1, copy_first_load=False)

    assert copied == merged
    assert copied[0] == InventoryResult(
        inserted=305, updated=0, unchanged=0, disappeared=0, history_rows=305
    )
    assert copied[1] == (0, 0, 305)
    assert stored(pg, "copied") == stored(pg, "merged")
    current, history = stored(pg, "copied")
    assert len(current) == len(history) == 305
    assert {row[-3:-1] for row in current} == {(T1.astimezone(UTC), 7)}  # updated_at, run_id
    assert {row[-1] for row in current} == {None, -(2**63), 2**63 - 1}  # the fingerprints
    # Is anything stored (and a digest on file), the appeared history; the COPY goes to the
    # driver, and no digest is on file to delete.
    assert len(copy_statements) == 2
    assert not [s for s in copy_statements if "CREATE TEMP" in s or "ON CONFLICT" in s]


def test_a_first_load_deletes_a_digest_on_file_for_a_warehouse_with_nothing_stored(
    pg: Engine,
) -> None:
    """An empty catalogue loaded with its digest leaves the digest and no article; the copied
    first load that follows gives none, so the digest on file goes (the survey saw it)."""
    with pg.begin() as conn:
        staged = stage_inventory(
            conn, location_id="tienda_01", warehouse_code="APP-TPF", items=[], run_id=1, now=T1
        )
        apply_inventory(conn, staged, digest=CatalogueDigest("empty", articles=0, fetched=0))
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(catalogue_digests)).scalar() == 1

    result, _ = load(pg, awkward_catalogue(), location="tienda_01", run_id=2, now=T2)

    assert result.inserted == 305
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(catalogue_digests)).scalar() == 0


def test_the_load_after_a_copied_first_load_matches_the_merged_one(pg: Engine) -> None:
    items = awkward_catalogue()
    second = [
        replace(items[0], stock=items[0].stock + 1),  # changed stock
        replace(items[1], price_usd=items[1].price_usd + 1),  # changed price only
        *items[2:250],  # items[5] back to its first stock; 55 vanish
        catalogue_item(1000),  # new
    ]
    for location, copy in (("copied", True), ("merged", False)):
        load(pg, items, location=location, run_id=7, now=T1, copy_first_load=copy)

    copied = load(pg, second, location="copied", run_id=8, now=T2)
    merged = load(pg, second, location="merged", run_id=8, now=T2)

    assert copied == merged
    assert copied[0] == InventoryResult(
        inserted=1, updated=3, unchanged=247, disappeared=55, history_rows=58
    )
    assert stored(pg, "copied") == stored(pg, "merged")


def test_a_warehouse_with_stored_articles_is_merged(pg: Engine, executed: list[str]) -> None:
    load(pg, catalogue(10), location="tienda_01", run_id=1, now=T1)

    executed.clear()
    result, _ = load(pg, catalogue(12), location="tienda_01", run_id=2, now=T2)

    assert (result.inserted, result.unchanged) == (2, 10)
    assert any("ON CONFLICT" in s for s in executed)


def test_an_empty_first_catalogue_writes_nothing(pg: Engine) -> None:
    result, seen = load(pg, [], location="tienda_01", run_id=1, now=T1)

    assert result == InventoryResult(
        inserted=0, updated=0, unchanged=0, disappeared=0, history_rows=0
    )
    assert seen == (0, 0, 0)
    assert stored(pg, "tienda_01") == ([], [])


@pytest.mark.parametrize(
    "bad",
    [pytest.param({"sku": None}, id="null-sku"), pytest.param({"stock": None}, id="null-stock")],
)
def test_one_bad_article_fails_the_whole_first_catalogue(
    pg: Engine, bad: dict[str, object]
) -> None:
    items = [*catalogue(10), replace(catalogue_item(400), **bad)]  # type: ignore[arg-type]

    with pytest.raises(DBAPIError):
        load(pg, items, location="tienda_01", run_id=1, now=T1)

    assert stored(pg, "tienda_01") == ([], [])
