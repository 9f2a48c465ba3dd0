"""A clean chain: inventory, then a sales backfill, load every location exactly as the simulator
served it; doing it again rewrites nothing (SPEC §4.6: re-running any window rewrites nothing)."""

from __future__ import annotations

from contextlib import nullcontext

from engine_support import (
    D1,
    D2,
    DC,
    LOCATIONS,
    STORES,
    TODAY,
    Chain,
    assert_inventory_equal_served,
    assert_products_equal_served,
    assert_sales_equal_served,
    coverage_of,
    local,
    publishing_pg_stats,
    row_versions,
    sales_stamps,
    stored_stock,
    table_writes,
    watermark_of,
)

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus

WRITTEN_TABLES = ("sales_lines", "inventory_current")


def test_inventory_then_backfill_load_every_location_as_served(chain: Chain) -> None:
    inventory = chain.run(Job.INVENTORY)
    sales = chain.run(Job.SALES, date_from=D1, date_to=D2)

    assert inventory.status is RunStatus.SUCCEEDED
    assert set(inventory.items) == set(LOCATIONS)
    assert sales.status is RunStatus.SUCCEEDED
    assert set(sales.items) == set(STORES), "a distribution centre has no sales"
    for loc in LOCATIONS:
        item = inventory.items[loc]
        articles = assert_inventory_equal_served(chain, loc)
        assert (item.status, item.fetched, item.inserted) == (
            ItemStatus.SUCCEEDED,
            articles,
            articles,
        )
    codes = [w.code for loc in LOCATIONS for w in chain.config.location(loc).warehouses]
    assert_products_equal_served(chain, codes)
    for loc in STORES:
        lines = assert_sales_equal_served(chain, loc, [D1, D2])
        item = sales.items[loc]
        assert (item.fetched, item.inserted, item.updated, item.deleted) == (lines, lines, 0, 0)
        ranges = coverage_of(chain.engine, loc)
        assert [(r.start, r.end, r.provisional) for r in ranges] == [
            (local(D1, 0), local(TODAY, 0), False)
        ], "two whole local days, finally covered and merged"


def test_a_second_identical_run_rewrites_nothing(chain: Chain) -> None:
    postgres = chain.engine.dialect.name == "postgresql"
    with publishing_pg_stats(chain.engine) if postgres else nullcontext():
        chain.run(Job.INVENTORY)
        chain.run(Job.SALES, date_from=D1, date_to=D2)
        stamps = {loc: sales_stamps(chain.engine, loc) for loc in STORES}
        stock = {loc: stored_stock(chain.engine, loc, _code(chain, loc)) for loc in LOCATIONS}
        marks = {loc: watermark_of(chain.engine, loc) for loc in STORES}
        if postgres:
            versions = _versions(chain)
            counters = {t: table_writes(chain.engine, t) for t in WRITTEN_TABLES}
            assert counters["sales_lines"][0] >= sum(len(s) for s in stamps.values()), (
                "the counters are live: the first load shows in them"
            )

        inventory = chain.run(Job.INVENTORY)
        backfill = chain.run(Job.SALES, date_from=D1, date_to=D2)
        reread = chain.run(Job.RECONCILE, params={"days": 2})  # re-reads D1 and D2 whole

    assert {inventory.status, backfill.status, reread.status} == {RunStatus.SUCCEEDED}
    for loc in LOCATIONS:
        item = inventory.items[loc]
        assert item.fetched == item.unchanged == len(stock[loc]) > 0
        assert (item.inserted, item.updated, item.deleted, item.held) == (0, 0, 0, 0)
        assert stored_stock(chain.engine, loc, _code(chain, loc)) == stock[loc]
    for loc in STORES:
        skipped = backfill.items[loc]
        assert [w.get("skipped") for w in skipped.windows or []] == ["already covered"] * 2
        assert (skipped.fetched, skipped.inserted, skipped.updated) == (0, 0, 0)
        item = reread.items[loc]
        assert item.fetched == item.unchanged == len(stamps[loc]) > 0
        assert (item.inserted, item.updated, item.deleted, item.held) == (0, 0, 0, 0)
        assert sales_stamps(chain.engine, loc) == stamps[loc], "no line rewritten"
        assert watermark_of(chain.engine, loc) == marks[loc]
    if postgres:
        assert _versions(chain) == versions, "no row got a new version (xmin)"
        assert {t: table_writes(chain.engine, t) for t in WRITTEN_TABLES} == counters


def test_scheduled_sales_read_from_yesterday_midnight_up_to_now(chain: Chain) -> None:
    sales = chain.run(Job.SALES)

    assert sales.status is RunStatus.SUCCEEDED
    for loc in STORES:
        assert_sales_equal_served(chain, loc, [D2, TODAY])
        ranges = coverage_of(chain.engine, loc)
        now = chain.clock.now()
        assert [(r.start, r.end, r.provisional) for r in ranges] == [(local(D2, 0), now, False)]
        assert watermark_of(chain.engine, loc) == now
        windows = [(w["day"], w["from"], w["to"]) for w in sales.items[loc].windows or []]
        assert windows == [
            (D2.isoformat(), "00:00:00", "24:00:00"),
            (TODAY.isoformat(), "00:00:00", "19:00:00"),
        ], "one KLK call per local day, cut at local midnight"
    assert DC not in sales.items


def _code(chain: Chain, loc: str) -> str:
    return chain.config.location(loc).warehouses[0].code


def _versions(chain: Chain) -> dict[str, dict[object, str]]:
    return {
        "sales_lines": row_versions(chain.engine, "sales_lines", "id"),
        "inventory_current": row_versions(
            chain.engine, "inventory_current", "location_id || '/' || warehouse_code || '/' || sku"
        ),
    }


def test_a_backfill_up_to_today_moves_the_watermark_to_where_it_read(chain: Chain) -> None:
    """Time passes while KLK answers (seconds for a busy store); the watermark still moves to
    the instant today's window was cut at, the end of what was read and covered."""
    rt = chain.runtime()

    def klk_takes_time(_location_id: str, stage: str, _detail: str) -> None:
        if stage == "extract":
            chain.clock.advance(2.5)

    rt.on_progress = klk_takes_time
    cut = chain.clock.now()

    run = chain.run(Job.SALES, date_from=TODAY, date_to=TODAY, locations=("tienda_01",), rt=rt)

    assert run.status is RunStatus.SUCCEEDED
    ranges = coverage_of(chain.engine, "tienda_01")
    assert [(r.start, r.end) for r in ranges] == [(local(TODAY, 0), cut)]
    assert watermark_of(chain.engine, "tienda_01") == cut
