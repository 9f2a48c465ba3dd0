"""Of a catalogue that changed since its warehouse was loaded, only the articles no stored row was
loaded from (their fingerprints) are decoded and merged; the stored articles it no longer lists
are removed by name. What is stored, the history and the counters are what loading the whole
catalogue gives (``klk.decode._changed_articles``, ``store.catalogue_digests.known_articles``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
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
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.engine import inventory as engine_inventory
from fluxion_etl.sim.faults import parse_fault
from fluxion_etl.store import catalogue_digests, inventory_loader
from fluxion_etl.store.schema import inventory_current, inventory_history


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Per warehouse, what the engine handed the loader: the skus staged, kept and gone."""
    seen: dict[str, dict[str, Any]] = {}
    real = inventory_loader.stage_inventory

    def spy(conn: Any, **kwargs: Any) -> inventory_loader.InventoryStage:
        seen[kwargs["warehouse_code"]] = {
            "skus": sorted(item.sku for item in kwargs["items"]),
            "kept": kwargs.get("kept", 0),
            "gone": kwargs.get("gone"),
        }
        return real(conn, **kwargs)

    monkeypatch.setattr(engine_inventory.inventory_loader, "stage_inventory", spy)
    return seen


def _code(chain: Chain, loc: str) -> str:
    codes = [w.code for w in chain.config.location(loc).warehouses]
    assert len(codes) == 1, "the stores of the test chain have one warehouse"
    return codes[0]


def _served(chain: Chain) -> dict[str, dict[str, dict[str, Any]]]:
    return {_code(chain, loc): served_catalogue(chain.world, _code(chain, loc)) for loc in STORES}


def _history(chain: Chain, run_id: int) -> list[tuple[str, str, Any, Any]]:
    h = inventory_history.c
    query = (
        select(h.sku, h.change, h.old_stock, h.new_stock)
        .where(h.run_id == run_id)
        .order_by(h.warehouse_code, h.sku)
    )
    with chain.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _without(monkeypatch: pytest.MonkeyPatch, chain: Chain, dropped: Callable[[str], bool]) -> None:
    """From now on KLK leaves out of every catalogue the articles whose sku ``dropped`` says."""
    world = chain.world
    real = world.catalogue_rows

    def rows(codes: Sequence[str], at: datetime | None = None) -> list[bytes]:
        return [row for row in real(codes, at) if not dropped(_sku_of(row))]

    def array(codes: Sequence[str], at: datetime | None = None) -> tuple[bytes, int]:
        kept = rows(codes, at)
        return b"[" + b",".join(kept) + b"]", len(kept)

    monkeypatch.setattr(world, "catalogue_rows", rows)
    monkeypatch.setattr(world, "catalogue_array", array)


def _sku_of(row: bytes) -> str:
    return row.split(b'"Codigo":', 1)[1].split(b'"', 2)[1].decode()


def test_only_the_articles_that_moved_are_decoded_merged_and_written(
    chain: Chain, staged: dict[str, dict[str, Any]]
) -> None:
    chain.run(Job.INVENTORY)
    before = _served(chain)
    stamps = {loc: stored_stock(chain.engine, loc, _code(chain, loc)) for loc in STORES}
    chain.clock.advance(hours=1.5)  # the stores sell: some stock moves
    after = _served(chain)
    staged.clear()

    run = chain.run(Job.INVENTORY)

    assert run.status is RunStatus.SUCCEEDED
    expected_history = []
    for loc in STORES:
        code = _code(chain, loc)
        moved = sorted(sku for sku, row in after[code].items() if row != before[code].get(sku))
        assert moved, f"{loc} sold something"
        assert staged[code] == {"skus": moved, "kept": len(after[code]) - len(moved), "gone": ()}
        item = run.items[loc]
        assert item.status is ItemStatus.SUCCEEDED
        assert [w.get("decoded") for w in item.windows or []] == [len(moved)]
        assert (item.updated, item.inserted, item.deleted) == (len(moved), 0, 0)
        assert item.unchanged == item.fetched - len(moved)
        assert assert_inventory_equal_served(chain, loc) == item.fetched
        now_stored = stored_stock(chain.engine, loc, code)
        for sku, row in now_stored.items():  # rows that did not move keep their time and run
            if sku not in moved:
                assert row == stamps[loc][sku]
        expected_history += [
            (sku, "changed", before[code][sku]["stock"], after[code][sku]["stock"])
            for sku in moved
            if before[code][sku]["stock"] != after[code][sku]["stock"]
        ]
    assert sorted(_history(chain, run.run.id)) == sorted(expected_history)


def test_articles_gone_from_a_changed_catalogue_are_removed_by_name(
    chain: Chain, staged: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loc = STORES[0]
    code = _code(chain, loc)
    chain.run(Job.INVENTORY, locations=(loc,))
    vanishing = sorted(served_catalogue(chain.world, code))[:3]
    _without(monkeypatch, chain, vanishing.__contains__)
    chain.clock.advance(hours=1.5)
    staged.clear()

    run = chain.run(Job.INVENTORY, locations=(loc,))

    assert staged[code]["gone"] == tuple(vanishing)
    item = run.items[loc]
    assert item.deleted == 3
    assert assert_inventory_equal_served(chain, loc) == item.fetched
    gone = [row for row in _history(chain, run.run.id) if row[1] == "disappeared"]
    assert [row[0] for row in gone] == vanishing
    assert all(row[3] is None and row[2] is not None for row in gone)
    staged.clear()
    again = chain.run(Job.INVENTORY, locations=(loc,))
    assert [w.get("unchanged") for w in again.items[loc].windows or []] == [True]
    assert staged == {}, "the load left a digest: the same catalogue is skipped"


def test_a_mass_disappearance_found_so_is_held_and_the_next_run_loads_whole(
    chain: Chain, staged: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    loc = STORES[1]
    code = _code(chain, loc)
    chain.run(Job.INVENTORY, locations=(loc,))
    stored_before = stored_stock(chain.engine, loc, code)
    half = set(sorted(stored_before)[: len(stored_before) // 2 + 1])
    _without(monkeypatch, chain, half.__contains__)
    staged.clear()

    held = chain.run(Job.INVENTORY, locations=(loc,))
    held_with = staged.pop(code)
    again = chain.run(Job.INVENTORY, locations=(loc,))

    assert held_with["gone"] == tuple(sorted(half))
    assert held.items[loc].held == len(half)
    assert held.items[loc].deleted == 0
    assert set(stored_stock(chain.engine, loc, code)) == set(stored_before)
    assert staged[code]["gone"] is None, "a held load leaves no digest: decoded whole"
    assert again.items[loc].held == len(half)


def test_a_catalogue_with_a_repeated_article_is_decoded_whole(
    chain: Chain, staged: dict[str, dict[str, Any]]
) -> None:
    chain.run(Job.INVENTORY)
    chain.clock.advance(hours=1.5)
    chain.plan.add([parse_fault("catalogue@*:duplicate_lines=2")])
    staged.clear()

    run = chain.run(Job.INVENTORY)

    for loc in STORES:
        assert staged[_code(chain, loc)]["gone"] is None
        assert run.items[loc].duplicates == 2
        assert assert_inventory_equal_served(chain, loc) == run.items[loc].fetched - 2


def test_rows_without_a_fingerprint_are_decoded_and_get_one_without_counting_as_updated(
    chain: Chain, staged: dict[str, dict[str, Any]]
) -> None:
    """As after the upgrade that added fingerprints: the rows stored before have none."""
    loc = STORES[2]
    code = _code(chain, loc)
    chain.run(Job.INVENTORY, locations=(loc,))
    with chain.engine.begin() as conn:
        conn.execute(text("UPDATE inventory_current SET fingerprint = NULL WHERE sku < '000020'"))
    stamps = stored_stock(chain.engine, loc, code)
    nulled = sorted(sku for sku in stamps if sku < "000020")
    before = served_catalogue(chain.world, code)
    chain.clock.advance(hours=1.5)
    after = served_catalogue(chain.world, code)
    moved = {sku for sku, row in after.items() if row != before[sku]}
    staged.clear()

    run = chain.run(Job.INVENTORY, locations=(loc,))

    assert nulled
    assert staged[code]["skus"] == sorted(moved | set(nulled))
    assert run.items[loc].updated == len(moved)
    stored = stored_stock(chain.engine, loc, code)
    for sku in set(nulled) - moved:
        assert stored[sku] == stamps[sku], "the values, their time and run are as they were"
    c = inventory_current.c
    with chain.engine.connect() as conn:
        missing = conn.execute(
            select(func.count()).where(c.location_id == loc, c.fingerprint.is_(None))
        ).scalar_one()
    assert missing == 0


def test_the_chain_loaded_by_changes_equals_the_chain_loaded_whole(chain: Chain) -> None:
    """Three cycles while the stores sell, then a full run: it finds nothing to change."""
    chain.run(Job.INVENTORY)
    for _ in range(3):
        chain.clock.advance(minutes=30)
        assert chain.run(Job.INVENTORY).status is RunStatus.SUCCEEDED

    full = chain.run(Job.INVENTORY, params={"full": True})

    for loc in LOCATIONS:
        item = full.items[loc]
        assert (item.inserted, item.updated, item.deleted) == (0, 0, 0)
        assert item.unchanged == item.fetched == assert_inventory_equal_served(chain, loc)
    assert _history(chain, full.run.id) == []


def test_stored_articles_that_cannot_be_read_make_the_catalogue_decode_whole(
    chain: Chain, staged: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.run(Job.INVENTORY)
    chain.clock.advance(hours=1.5)

    def unreadable(conn: Any, **_: Any) -> None:
        raise OperationalError("SELECT sku, fingerprint …", {}, Exception("connection lost"))

    monkeypatch.setattr(catalogue_digests, "known_articles", unreadable)
    staged.clear()

    run = chain.run(Job.INVENTORY)

    assert run.status is RunStatus.SUCCEEDED
    for loc in STORES:
        assert staged[_code(chain, loc)]["gone"] is None
        assert assert_inventory_equal_served(chain, loc) == run.items[loc].fetched


def test_two_stored_rows_with_one_fingerprint_have_their_articles_decoded(
    chain: Chain, staged: dict[str, dict[str, Any]]
) -> None:
    """Say a hand edit copied one row's fingerprint onto another: neither says which article it
    was loaded from, so both are decoded (and each gets its own fingerprint back)."""
    loc = STORES[0]
    code = _code(chain, loc)
    chain.run(Job.INVENTORY, locations=(loc,))
    first, second = sorted(stored_stock(chain.engine, loc, code))[:2]
    with chain.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE inventory_current SET fingerprint = (SELECT fingerprint FROM "
                "inventory_current WHERE location_id = :loc AND sku = :first) "
                "WHERE location_id = :loc AND sku = :second"
            ),
            {"loc": loc, "first": first, "second": second},
        )
    chain.clock.advance(hours=1.5)
    staged.clear()

    run = chain.run(Job.INVENTORY, locations=(loc,))

    assert staged[code]["gone"] == ()
    assert {first, second} <= set(staged[code]["skus"])
    assert assert_inventory_equal_served(chain, loc) == run.items[loc].fetched
    c = inventory_current.c
    with chain.engine.connect() as conn:
        fingerprints = conn.execute(
            select(c.fingerprint).where(c.location_id == loc, c.sku.in_([first, second]))
        ).all()
    assert len({f for (f,) in fingerprints}) == 2


def test_a_load_of_the_same_catalogue_by_another_run_in_between_is_noticed(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest read before the fetch must be the very one on file at the load, not an equal
    one another run wrote meanwhile (it may have stored other articles in between)."""
    loc = STORES[1]
    chain.run(Job.INVENTORY, locations=(loc,))
    chain.clock.advance(hours=1.5)
    real = catalogue_digests.known_articles

    def reloaded_then_read(conn: Any, **kwargs: Any) -> Any:
        with chain.engine.begin() as other:  # another run's load of the same catalogue
            other.execute(text("UPDATE catalogue_digests SET run_id = run_id + 1000"))
        return real(conn, **kwargs)

    monkeypatch.setattr(catalogue_digests, "known_articles", reloaded_then_read)
    run = chain.run(Job.INVENTORY, locations=(loc,))

    item = run.items[loc]
    assert item.status is ItemStatus.FAILED
    assert "changed while its catalogue was fetched" in (item.error_message or "")
