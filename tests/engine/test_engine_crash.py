"""All or nothing per location (SPEC §4.5) and runs abandoned by dead processes (SPEC §4.3), with
real ``kill -9``: the command SIGKILLs itself at named points (engine/crashpoints.py).

One simulated timeline per dialect (stores closed, so nothing sells while real time runs):
  Mon 22:00  inventory and sales loaded in this process (the "old" data)
  Tue 22:00  a new day: every stock and the day's sales differ
    A  ``run inventory``, killed right after tienda_02 committed
    B  ``run sales``, killed inside tienda_03's load transaction
    a run for tienda_02 meets A's lease, still live: skipped_busy
  TTL later
    C  ``run sales --from Mon --to Tue`` marks A and B abandoned, frees their leases and
       completes every window (exit 0)
    an inventory run completes the catalogues
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_cli import KILLED, LEASE_TTL, cli_chain
from engine_support import (
    CARACAS,
    LOCATIONS,
    STORES,
    Chain,
    assert_inventory_equal_served,
    assert_sales_equal_served,
    count,
    coverage_of,
    latest_run,
    local,
    outcome,
    sales_stamps,
    stored_stock,
    watermark_of,
)
from sqlalchemy import select

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.store import leases
from fluxion_etl.store.schema import inventory_history

h = inventory_history.c

MONDAY = datetime(2025, 11, 17, 22, 0, tzinfo=CARACAS)
J, K = "tienda_02", "tienda_03"


def _stock(chain: Chain) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        loc: stored_stock(chain.engine, loc, chain.config.location(loc).warehouses[0].code)
        for loc in LOCATIONS
    }


def _sales(chain: Chain) -> dict[str, object]:
    return {
        loc: (
            sales_stamps(chain.engine, loc),
            coverage_of(chain.engine, loc),
            watermark_of(chain.engine, loc),
        )
        for loc in STORES
    }


def _history(chain: Chain, run_id: int) -> dict[str, list[tuple[str, Any]]]:
    """(sku, new stock) of the history rows a run wrote, by location."""
    out: dict[str, list[tuple[str, Any]]] = {}
    with chain.engine.connect() as conn:
        rows = conn.execute(
            select(h.location_id, h.sku, h.new_stock).where(
                h.run_id == run_id, h.change == "changed"
            )
        )
        for row in rows:
            out.setdefault(row.location_id, []).append((row.sku, row.new_stock))
    return out


def _lease_run(chain: Chain, job: str, location_id: str) -> int | None:
    with chain.engine.connect() as conn:
        lease = leases.holder(conn, job, location_id)
    return lease.run_id if lease else None


@pytest.mark.slow
@pytest.mark.timeout(600)  # process starts: minutes on a saturated shared machine
def test_kill_9_leaves_each_location_old_or_new_and_the_next_run_completes(
    migrated_url: str, tmp_path: Path
) -> None:
    with cli_chain(migrated_url, tmp_path, MONDAY) as cli:
        chain = cli.chain
        rt = chain.runtime()
        chain.run(Job.INVENTORY, rt=rt)
        chain.run(Job.SALES, rt=rt)
        old_stock, old_sales = _stock(chain), _sales(chain)
        chain.clock.advance(days=1)

        a = cli.run("run", "inventory", FLUXION_CRASH_AT=f"committed:{J}")
        run_a = latest_run(chain.engine)
        stock_after_a = _stock(chain)
        history_a = _history(chain, run_a.run.id)
        b = cli.run("run", "sales", FLUXION_CRASH_AT=f"loading:{K}")
        run_b = latest_run(chain.engine)
        sales_after_b = _sales(chain)
        busy = chain.run(Job.SALES, locations=(K,), rt=rt)
        held_leases = (_lease_run(chain, "inventory", J), _lease_run(chain, "sales", K))

        chain.clock.advance(seconds=LEASE_TTL + 1)
        monday, tuesday = MONDAY.date(), (MONDAY + timedelta(days=1)).date()
        c = cli.run("run", "sales", "--from", str(monday), "--to", str(tuesday))
        abandoned = (outcome(chain.engine, run_a.run.id), outcome(chain.engine, run_b.run.id))
        run_c = latest_run(chain.engine)
        inventory = chain.run(Job.INVENTORY, rt=rt)

    assert (a.returncode, b.returncode) == (KILLED, KILLED), f"{a}\n{b}"
    # A: the locations before and at the crash point are new, the rest old.
    assert run_a.status is RunStatus.RUNNING
    assert [run_a.items[loc].status for loc in LOCATIONS] == [
        ItemStatus.SUCCEEDED,
        ItemStatus.SUCCEEDED,
        ItemStatus.PENDING,
        ItemStatus.PENDING,
    ]
    for loc in LOCATIONS:
        if loc in ("tienda_01", J):
            assert stock_after_a[loc] != old_stock[loc]
        else:
            assert stock_after_a[loc] == old_stock[loc]
    assert set(history_a) == {"tienda_01", J}, "history only where the stock was replaced"
    for loc, changes in history_a.items():
        current = stock_after_a[loc]
        assert all(current[sku]["stock"] == new for sku, new in changes), "history = current"
    # B: tienda_01 and J committed; K's transaction died with the process.
    assert run_b.status is RunStatus.RUNNING
    assert run_b.items[K].status is ItemStatus.RUNNING
    assert sales_after_b[K] == old_sales[K], "K's rows, coverage and watermark as before"
    for loc in ("tienda_01", J):
        assert run_b.items[loc].status is ItemStatus.SUCCEEDED
        assert sales_after_b[loc] != old_sales[loc]
    # A location's lease is freed with its load (J's, committed before A died); a dead run's
    # live lease (K's, mid-load in B) keeps others out until it expires.
    assert busy.items[K].status is ItemStatus.SKIPPED_BUSY
    assert busy.items[K].error_message == f"busy: run {run_b.run.id} holds this location"
    assert held_leases == (None, run_b.run.id)
    # C: the dead runs are abandoned (their finished items kept), the windows completed.
    assert c.returncode == 0, str(c)
    for dead, unfinished in zip(abandoned, ((K, "cedi_caracas"), (K,)), strict=True):
        assert dead.status is RunStatus.ABANDONED
        assert "lease expired" in (dead.run.error_message or "")
        for loc, item in dead.items.items():
            if loc in unfinished:
                assert item.status is ItemStatus.FAILED
                assert "lease expired" in (item.error_message or "")
            else:
                assert item.status is ItemStatus.SUCCEEDED
    assert run_c.status is RunStatus.SUCCEEDED
    assert inventory.status is RunStatus.SUCCEEDED
    for loc in STORES:
        assert_sales_equal_served(chain, loc, [monday, tuesday])
        ranges = coverage_of(chain.engine, loc)
        assert [(r.start, r.provisional) for r in ranges] == [
            (local(tuesday - timedelta(days=2), 0), False)
        ], "one final range from the first sync up to now: no gap left"
        assert ranges[0].end == watermark_of(chain.engine, loc)
    for loc in LOCATIONS:
        assert_inventory_equal_served(chain, loc)
    assert count(chain.engine, "SELECT count(*) FROM leases") == 0
