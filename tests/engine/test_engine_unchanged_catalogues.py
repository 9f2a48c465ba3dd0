"""A catalogue whose article list is the one the warehouse was loaded from is neither decoded nor
merged again, and counts as unchanged; anything that may have made the stored articles differ
from it (a load held back, rows removed by hand, a run that did not finish whole) makes the next
run load the catalogue whole (``store.catalogue_digests``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from engine_support import (
    LOCATIONS,
    STORES,
    Chain,
    assert_inventory_equal_served,
    served_catalogue,
    stored_stock,
)
from sqlalchemy import select, text, update

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.engine import inventory as engine_inventory
from fluxion_etl.store import inventory_loader
from fluxion_etl.store.schema import catalogue_digests, inventory_current


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The warehouses whose catalogue went through the loader's stage and merge."""
    seen: list[str] = []
    real = inventory_loader.stage_inventory

    def spy(conn: Any, **kwargs: Any) -> inventory_loader.InventoryStage:
        seen.append(kwargs["warehouse_code"])
        return real(conn, **kwargs)

    monkeypatch.setattr(engine_inventory.inventory_loader, "stage_inventory", spy)
    return seen


def _codes(chain: Chain, loc: str) -> list[str]:
    return [w.code for w in chain.config.location(loc).warehouses]


def _unchanged_windows(item: Any) -> list[bool]:
    return [bool(w.get("unchanged")) for w in item.windows or []]


def test_an_unchanged_catalogue_is_not_decoded_nor_merged_and_counts_as_unchanged(
    chain: Chain, staged: list[str]
) -> None:
    first = chain.run(Job.INVENTORY)
    loaded = len(staged)
    stock = {loc: stored_stock(chain.engine, loc, _codes(chain, loc)[0]) for loc in LOCATIONS}
    staged.clear()

    again = chain.run(Job.INVENTORY)

    assert first.status is again.status is RunStatus.SUCCEEDED
    assert loaded == sum(len(_codes(chain, loc)) for loc in LOCATIONS)
    assert staged == [], "no catalogue was staged the second time"
    for loc in LOCATIONS:
        item = again.items[loc]
        assert item.status is ItemStatus.SUCCEEDED
        assert _unchanged_windows(item) == [True] * len(_codes(chain, loc))
        assert item.fetched == item.unchanged == first.items[loc].fetched > 0
        assert (item.inserted, item.updated, item.deleted, item.held) == (0, 0, 0, 0)
        assert stored_stock(chain.engine, loc, _codes(chain, loc)[0]) == stock[loc]


def test_a_catalogue_that_changed_is_loaded_whole_and_the_rest_are_skipped(
    chain: Chain, staged: list[str]
) -> None:
    chain.run(Job.INVENTORY)
    before = {
        code: served_catalogue(chain.world, code) for c in LOCATIONS for code in _codes(chain, c)
    }
    chain.clock.advance(hours=1.5)  # the stores sell: their stock moves
    after = {code: served_catalogue(chain.world, code) for code in before}
    changed = {code for code in before if before[code] != after[code]}
    staged.clear()

    run = chain.run(Job.INVENTORY)

    assert run.status is RunStatus.SUCCEEDED
    assert changed & {code for s in STORES for code in _codes(chain, s)}, "the stores sold"
    assert sorted(staged) == sorted(changed)
    for loc in LOCATIONS:
        item = run.items[loc]
        assert _unchanged_windows(item) == [code not in changed for code in _codes(chain, loc)]
        assert assert_inventory_equal_served(chain, loc) == item.fetched
        if set(_codes(chain, loc)) & changed:
            assert item.updated > 0


def test_rows_removed_by_hand_make_the_next_run_load_the_catalogue_whole(
    chain: Chain, staged: list[str]
) -> None:
    chain.run(Job.INVENTORY)
    loc = STORES[0]
    with chain.engine.begin() as conn:
        first_three = (
            "SELECT sku FROM inventory_current WHERE location_id = :loc ORDER BY sku LIMIT 3"
        )
        conn.execute(
            text(
                f"DELETE FROM inventory_current WHERE location_id = :loc AND sku IN ({first_three})"
            ),
            {"loc": loc},
        )
    staged.clear()

    run = chain.run(Job.INVENTORY)

    assert staged == _codes(chain, loc)
    item = run.items[loc]
    assert (item.inserted, _unchanged_windows(item)) == (3, [False])
    assert assert_inventory_equal_served(chain, loc) == item.fetched


def test_a_digest_written_by_a_run_that_did_not_finish_whole_is_not_trusted(
    chain: Chain, staged: list[str]
) -> None:
    """The run's products upsert comes after its locations' loads: a run that died in between
    has loaded catalogues whose products it never wrote."""
    first = chain.run(Job.INVENTORY)
    with chain.engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET status = 'abandoned' WHERE id = :id"), {"id": first.run.id}
        )
    staged.clear()

    again = chain.run(Job.INVENTORY)
    staged_again = list(staged)
    staged.clear()
    third = chain.run(Job.INVENTORY)

    everywhere = sorted(code for loc in LOCATIONS for code in _codes(chain, loc))
    assert sorted(staged_again) == everywhere
    assert all(not any(_unchanged_windows(i)) for i in again.items.values())
    assert staged == [], "the run that loaded them whole finished: its digests count"
    assert all(all(_unchanged_windows(i)) for i in third.items.values())


def test_a_held_disappearance_leaves_no_digest_and_the_release_loads_whole(
    chain: Chain, staged: list[str]
) -> None:
    loc = STORES[1]
    code = _codes(chain, loc)[0]
    chain.run(Job.INVENTORY, locations=(loc,))
    with chain.engine.begin() as conn:  # articles KLK does not have: to the loader, they vanish
        conn.execute(
            text(
                "INSERT INTO inventory_current "
                "(location_id, warehouse_code, sku, stock, price_usd, tax_rate, updated_at) "
                "SELECT location_id, warehouse_code, 'X' || sku, stock, price_usd, tax_rate, "
                "updated_at FROM inventory_current WHERE location_id = :loc"
            ),
            {"loc": loc},
        )
    staged.clear()

    held = chain.run(Job.INVENTORY, locations=(loc,))
    held_again = chain.run(Job.INVENTORY, locations=(loc,))
    released = chain.run(Job.INVENTORY, locations=(loc,), params={"allow_mass_deletion": True})

    assert staged == [code, code, code], "each run loads the catalogue whole"
    assert held.items[loc].held == held_again.items[loc].held > 0
    assert released.items[loc].deleted == held.items[loc].held
    assert assert_inventory_equal_served(chain, loc) == released.items[loc].fetched
    staged.clear()
    assert _unchanged_windows(chain.run(Job.INVENTORY, locations=(loc,)).items[loc]) == [True]
    assert staged == []


def test_a_full_run_loads_every_catalogue_whole(chain: Chain, staged: list[str]) -> None:
    chain.run(Job.INVENTORY)
    staged.clear()

    full = chain.run(Job.INVENTORY, params={"full": True})

    assert sorted(staged) == sorted(code for loc in LOCATIONS for code in _codes(chain, loc))
    for loc in LOCATIONS:
        item = full.items[loc]
        assert not any(_unchanged_windows(item))
        assert item.fetched == item.unchanged == assert_inventory_equal_served(chain, loc)


def test_a_row_written_after_the_load_by_another_writer_voids_the_digest(
    chain: Chain, staged: list[str]
) -> None:
    """Say an older release still running during a deploy, or a correction by hand: every load
    stamps the rows it writes, so a row newer than the digest's load gives it away."""
    chain.run(Job.INVENTORY)
    loc = STORES[2]
    later = chain.clock.now() + timedelta(seconds=1)
    with chain.engine.begin() as conn:
        sku = conn.execute(
            select(inventory_current.c.sku).where(inventory_current.c.location_id == loc).limit(1)
        ).scalar_one()
        conn.execute(
            update(inventory_current)
            .where(inventory_current.c.location_id == loc, inventory_current.c.sku == sku)
            .values(stock=inventory_current.c.stock + 1, updated_at=later)
        )
    chain.clock.advance(seconds=2)
    staged.clear()

    run = chain.run(Job.INVENTORY)

    assert staged == _codes(chain, loc), "only the warehouse written to is loaded whole"
    assert run.items[loc].updated == 1
    assert assert_inventory_equal_served(chain, loc) == run.items[loc].fetched


def test_a_digest_written_by_other_code_is_not_trusted(chain: Chain, staged: list[str]) -> None:
    chain.run(Job.INVENTORY)
    with chain.engine.begin() as conn:
        conn.execute(update(catalogue_digests).values(code_version="an older release"))
    staged.clear()

    chain.run(Job.INVENTORY)
    reloaded = list(staged)
    staged.clear()
    chain.run(Job.INVENTORY)

    assert sorted(reloaded) == sorted(code for loc in LOCATIONS for code in _codes(chain, loc))
    assert staged == [], "reloaded by this code, the digests count again"
