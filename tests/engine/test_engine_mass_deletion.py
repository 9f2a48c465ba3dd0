"""A mass disappearance is held back and reported, not applied (SPEC §4.9): articles vanishing from
more than 5 % of a catalogue, or a day losing more than 5 % of its lines at the reconcile."""

from __future__ import annotations

from decimal import Decimal

from engine_support import D1, D2, Chain, assert_sales_equal_served, count, stored_sales
from sqlalchemy import insert

from fluxion_etl.domain.states import ErrorCategory, ErrorPhase, ItemStatus, Job, RunStatus
from fluxion_etl.sim.faults import parse_faults
from fluxion_etl.store import held
from fluxion_etl.store.schema import inventory_current

STORE = "tienda_02"


def _open_held(chain: Chain) -> list[tuple[str, str, int, int]]:
    with chain.engine.connect() as conn:
        rows = held.open_held_deletions(conn)
    return [(h.location_id, h.subject, h.would_delete, h.total) for h in rows]


def _add_articles_klk_does_not_have(chain: Chain, code: str, n: int) -> None:
    """From the loader's point of view the same as n articles vanishing from KLK's catalogue."""
    rows = [
        {
            "location_id": STORE,
            "warehouse_code": code,
            "sku": f"9{i:05d}",
            "stock": Decimal("3.5"),
            "price_usd": Decimal("1.25"),
            "tax_rate": Decimal("16"),
            "updated_at": chain.clock.now(),
            "run_id": None,
        }
        for i in range(n)
    ]
    with chain.engine.begin() as conn:
        conn.execute(insert(inventory_current), rows)


def _stock_rows(chain: Chain, code: str) -> int:
    sql = "SELECT count(*) FROM inventory_current WHERE location_id = :loc AND warehouse_code = :wh"
    return count(chain.engine, sql, loc=STORE, wh=code)


def test_articles_vanishing_from_a_catalogue_are_held_then_applied_on_request(
    chain: Chain,
) -> None:
    code = chain.config.location(STORE).warehouses[0].code
    chain.run(Job.INVENTORY)
    articles = _stock_rows(chain, code)
    _add_articles_klk_does_not_have(chain, code, 10)  # 10 of 130: above 5 %

    guarded = chain.run(Job.INVENTORY)
    kept = _stock_rows(chain, code)
    open_after_guard = _open_held(chain)
    applied = chain.run(Job.INVENTORY, params={"allow_mass_deletion": True})

    assert guarded.status is RunStatus.PARTIAL
    item = guarded.items[STORE]
    assert (item.status, item.error_category, item.error_phase) == (
        ItemStatus.SUCCEEDED,
        ErrorCategory.MASS_DELETION_HELD,
        ErrorPhase.LOAD,
    )
    assert (item.held, item.deleted) == (10, 0)
    assert "10 of 130" in (item.error_message or "")
    assert "mass deletion held" in (guarded.run.error_message or "")
    assert kept == articles + 10, "nothing removed while held"
    assert open_after_guard == [(STORE, f"catalogue {code}", 10, 130)]
    assert all(guarded.items[loc].held == 0 for loc in guarded.items if loc != STORE)
    assert applied.status is RunStatus.SUCCEEDED
    assert (applied.items[STORE].deleted, applied.items[STORE].held) == (10, 0)
    assert _stock_rows(chain, code) == articles
    disappeared = count(
        chain.engine,
        "SELECT count(*) FROM inventory_history WHERE change = 'disappeared' AND run_id = :run",
        run=applied.run.id,
    )
    assert disappeared == 10
    assert _open_held(chain) == [], "the applied deletion is no longer reported as held"


def test_a_few_vanished_articles_are_removed_at_once(chain: Chain) -> None:
    code = chain.config.location(STORE).warehouses[0].code
    chain.run(Job.INVENTORY)
    articles = _stock_rows(chain, code)
    _add_articles_klk_does_not_have(chain, code, 2)  # 2 of 122: below 5 %

    run = chain.run(Job.INVENTORY)

    assert run.status is RunStatus.SUCCEEDED
    assert (run.items[STORE].deleted, run.items[STORE].held) == (2, 0)
    assert _stock_rows(chain, code) == articles
    assert _open_held(chain) == []


def test_a_day_losing_many_lines_at_the_reconcile_is_held_then_applied_on_request(
    chain: Chain,
) -> None:
    chain.run(Job.SALES, date_from=D1, date_to=D2)
    loaded = stored_sales(chain.engine, STORE, D1)
    vanished = sorted(loaded)[: len(loaded) // 5]  # a fifth of the day
    chain.world.void_lines(STORE, D1, vanished)

    guarded = chain.run(Job.RECONCILE, params={"days": 2})
    kept = stored_sales(chain.engine, STORE, D1)
    open_after_guard = _open_held(chain)
    applied = chain.run(Job.RECONCILE, params={"days": 2, "allow_mass_deletion": True})

    assert guarded.status is RunStatus.PARTIAL
    item = guarded.items[STORE]
    assert (item.status, item.error_category) == (
        ItemStatus.SUCCEEDED,
        ErrorCategory.MASS_DELETION_HELD,
    )
    assert (item.held, item.deleted) == (len(vanished), 0)
    assert kept.keys() == loaded.keys(), "nothing deleted while held"
    assert open_after_guard == [(STORE, f"sales {D1}", len(vanished), len(loaded))]
    assert applied.status is RunStatus.SUCCEEDED
    assert applied.items[STORE].deleted == len(vanished)
    assert_sales_equal_served(chain, STORE, [D1, D2])
    assert _open_held(chain) == []


def test_an_empty_day_is_held_and_released_once_klk_answers_again(chain: Chain) -> None:
    chain.run(Job.SALES, date_from=D1, date_to=D2)
    before = {day: stored_sales(chain.engine, STORE, day).keys() for day in (D1, D2)}
    chain.plan.replace(parse_faults(f"sales@{STORE}:empty_sales"))  # its server is offline

    offline = chain.run(Job.RECONCILE, params={"days": 2})
    held_while_offline = _open_held(chain)
    chain.plan.clear()
    back = chain.run(Job.RECONCILE, params={"days": 2})

    assert offline.status is RunStatus.PARTIAL
    assert offline.items[STORE].held == sum(len(keys) for keys in before.values())
    assert {subject for _, subject, _, _ in held_while_offline} == {f"sales {D1}", f"sales {D2}"}
    assert {day: stored_sales(chain.engine, STORE, day).keys() for day in (D1, D2)} == before
    assert back.status is RunStatus.SUCCEEDED
    assert (back.items[STORE].deleted, back.items[STORE].held) == (0, 0)
    assert _open_held(chain) == [], "nothing is to be deleted any more: no longer held"
