"""Gap recovery against the simulator: recovered days equal what KLK served, a location that still
fails keeps its gap, and automatic recovery stays bounded (both dialects)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from ops_support import TODAY, Chain, local, run_row, simulated_chain
from sqlalchemy import Engine, select

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.ops.gaps import list_gaps
from fluxion_etl.ops.recover import auto_recover, recover_gaps
from fluxion_etl.store import leases
from fluxion_etl.store.schema import sales_lines

YESTERDAY = TODAY - timedelta(days=1)
NOW = local(TODAY, 10)

Line = tuple[str, str, Decimal, Decimal, Decimal]


@pytest.fixture
def chain(engine: Engine) -> Iterator[Chain]:
    with prepared_chain(engine) as chain:
        yield chain


@pytest.fixture
def sqlite_chain(sqlite_engine: Engine) -> Iterator[Chain]:
    """For the planning rules: their queries are the ones the test on both dialects runs."""
    with prepared_chain(sqlite_engine) as chain:
        yield chain


@contextmanager
def prepared_chain(engine: Engine) -> Iterator[Chain]:
    """Yesterday read as empty at tienda_01 and tienda_02 (their server was offline), today
    synced up to 10:00 everywhere: yesterday's opening hours are provisional gaps there."""
    with simulated_chain(engine, start=NOW) as chain:
        chain.fault("sales@tienda_01:empty_sales;sales@tienda_02:empty_sales")
        chain.run(Job.SALES, trigger=Trigger.BACKFILL, date_from=YESTERDAY, date_to=YESTERDAY)
        chain.plan.clear()
        chain.run(Job.SALES, trigger=Trigger.BACKFILL, date_from=TODAY, date_to=TODAY)
        yield chain


def gaps_by_location(chain: Chain, now: datetime | None = None) -> dict[str, set[date]]:
    with chain.engine.connect() as conn:
        found = list_gaps(conn, chain.config, now=now or chain.clock.now())
    out: dict[str, set[date]] = {}
    for gap in found:
        out.setdefault(gap.location_id, set()).add(gap.day)
    return out


def stored_lines(engine: Engine, location_id: str, day: date) -> dict[tuple[str, int], Line]:
    c = sales_lines.c
    query = select(
        c.invoice_number,
        c.line_number,
        c.sku,
        c.warehouse_code,
        c.quantity,
        c.total_usd,
        c.total_bs,
    ).where(c.location_id == location_id, c.business_day == day)
    with engine.connect() as conn:
        return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(query)}  # type: ignore[misc]


def served_lines(chain: Chain, location_id: str, day: date) -> dict[tuple[str, int], Line]:
    truth = chain.world.truth_sales(location_id, day)
    return {
        (t.invoice_number, t.line_number): (
            t.sku,
            t.warehouse_code,
            t.quantity,
            t.total_usd,
            t.total_bs,
        )
        for t in truth.lines
    }


def test_recovery_loads_what_klk_serves_and_a_still_failing_location_keeps_its_gap(
    chain: Chain,
) -> None:
    assert gaps_by_location(chain) == {"tienda_01": {YESTERDAY}, "tienda_02": {YESTERDAY}}
    assert stored_lines(chain.engine, "tienda_01", YESTERDAY) == {}
    chain.fault("sales@tienda_02:http_500")
    rt = chain.runtime()
    submitted = recover_gaps(
        chain.engine,
        config=chain.config,
        settings=chain.settings,
        clock=chain.clock,
        requested_by="test",
        launch=lambda run_id: execute_run(rt, run_id),
    )

    by_location = {run.location_id: run_row(chain.engine, run.run_id) for run in submitted}
    assert set(by_location) == {"tienda_01", "tienda_02"}
    assert by_location["tienda_01"].status is RunStatus.SUCCEEDED
    assert by_location["tienda_02"].status is RunStatus.FAILED
    for run in by_location.values():
        assert run.trigger is Trigger.RECOVERY
        assert (run.date_from, run.date_to) == (YESTERDAY, YESTERDAY)
        assert run.requested_by == "test"
    served = served_lines(chain, "tienda_01", YESTERDAY)
    assert served, "the simulator sold at tienda_01 yesterday"
    assert stored_lines(chain.engine, "tienda_01", YESTERDAY) == served
    assert gaps_by_location(chain) == {"tienda_02": {YESTERDAY}}


def test_a_location_whose_recovery_is_running_is_not_submitted_twice(sqlite_chain: Chain) -> None:
    chain = sqlite_chain
    launched: list[int] = []
    first = recover_gaps(
        chain.engine,
        config=chain.config,
        settings=chain.settings,
        clock=chain.clock,
        requested_by="test",
        location_id="tienda_01",
        launch=launched.append,
    )
    again = recover_gaps(
        chain.engine,
        config=chain.config,
        settings=chain.settings,
        clock=chain.clock,
        requested_by="test",
        launch=launched.append,
    )

    assert [(r.location_id, r.created) for r in first] == [("tienda_01", True)]
    assert {(r.location_id, r.created) for r in again} == {
        ("tienda_01", False),
        ("tienda_02", True),
    }
    assert next(r.run_id for r in again if r.location_id == "tienda_01") == first[0].run_id
    assert len(launched) == 2


def with_gap_threshold(config: ChainConfig, *, minutes: int) -> ChainConfig:
    alerts = config.alerts.model_copy(update={"gap_threshold_minutes": minutes})
    return replace(config, alerts=alerts)


def auto(chain: Chain, launched: list[int], **overrides: object) -> list[str]:
    settings = chain.settings.model_copy(update=overrides) if overrides else chain.settings
    started = auto_recover(
        chain.engine,
        config=chain.config,
        settings=settings,
        clock=chain.clock,
        launch=launched.append,
    )
    return [run.location_id for run in started]


def test_automatic_recovery_waits_for_the_threshold_and_keeps_few_runs_in_flight(
    sqlite_chain: Chain,
) -> None:
    chain = sqlite_chain
    launched: list[int] = []
    # Yesterday's gaps ended at 21:00: 13 hours ago, past the 2 h threshold.
    assert auto(chain, launched, auto_recover_max_in_flight=1) == ["tienda_01"]
    assert auto(chain, launched, auto_recover_max_in_flight=1) == []  # one is in flight
    assert auto(chain, launched, auto_recover_max_in_flight=2) == ["tienda_02"]
    runs = [run_row(chain.engine, run_id) for run_id in launched]
    assert {(r.trigger, r.requested_by) for r in runs} == {(Trigger.RECOVERY, "auto-recovery")}


def test_automatic_recovery_leaves_young_gaps_busy_and_recently_tried_locations_alone(
    sqlite_chain: Chain,
) -> None:
    chain = sqlite_chain
    launched: list[int] = []
    default = chain.config
    chain.config = with_gap_threshold(default, minutes=24 * 60)
    assert auto(chain, launched, auto_recover_max_in_flight=4) == []  # ended 13 h ago < 24 h

    chain.config = default
    with chain.engine.begin() as conn:
        leases.try_acquire(
            conn,
            job="sales",
            location_id="tienda_01",
            run_id=999,
            owner="someone",
            now=chain.clock.now(),
            ttl=timedelta(minutes=5),
        )
    assert auto(chain, launched, auto_recover_max_in_flight=4) == ["tienda_02"]

    # tienda_02's recovery ends (failed); within the cooldown it is not tried again
    rt = chain.runtime()
    chain.fault("sales@tienda_02:http_500")
    assert execute_run(rt, launched[0]) is RunStatus.FAILED
    chain.clock.advance(minutes=10)
    assert auto(chain, launched, auto_recover_max_in_flight=4) == ["tienda_01"]  # lease expired
    chain.clock.advance(minutes=60)
    assert execute_run(rt, launched[1]) is RunStatus.SUCCEEDED
    assert auto(chain, launched, auto_recover_max_in_flight=4) == ["tienda_02"]
