"""After downtime, end to end: the embedded scheduler, the runner and the KLK simulator.

The service is stopped for 27 hours across a local midnight and started again: one inventory run
(only the newest snapshot matters), one sales run that reads every store from its watermark to
now in one-local-day pieces, and every skipped fire listed as ``missed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from scheduler_helpers import CARACAS, caracas, drive

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES
from fluxion_etl.domain.states import FireOutcome, Job, RunStatus
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.scheduler.fires import submitting_fire
from fluxion_etl.settings import Settings
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld
from fluxion_etl.store import coverage, ledger
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.schedules import list_fires, seed_schedules

STOPPED, RESTARTED = caracas(5, 10, 6), caracas(6, 13, 10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(caracas(5, 9, 59, 59))


@pytest.fixture
def runtime(sqlite_url: str, clock: ManualClock, config: ChainConfig) -> Iterator[Runtime]:
    world = SimWorld(locations=22, skus=60, lines_per_day=40, seed=3, clock=clock)
    engine = create_db_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        seed_schedules(conn, DEFAULT_SCHEDULES[:2], clock.now())
    with running_simulator(world) as url:
        settings = Settings(klk_base_url=url, database_url=sqlite_url, klk_retry_initial_wait=0)
        with KlkClient.from_settings(settings) as klk:
            yield Runtime(settings=settings, config=config, engine=engine, klk=klk, clock=clock)
    engine.dispose()


def service(rt: Runtime) -> EmbeddedScheduler:
    """What ``serve`` wires: fires submit like the API, new runs execute right away."""
    fire = submitting_fire(
        rt.engine,
        config=rt.config,
        settings=rt.settings,
        clock=rt.clock,
        on_created=lambda run_id: execute_run(rt, run_id),
    )
    return EmbeddedScheduler(rt.engine, rt.clock, fire, poll_seconds=3600)


def test_after_downtime_inventory_runs_once_and_sales_covers_the_whole_missed_time(
    runtime: Runtime, clock: ManualClock
) -> None:
    drive([service(runtime)], clock, STOPPED)  # 10:00 inventory and 10:05 sales run
    clock.set(RESTARTED)
    answers = service(runtime).tick()  # a new process after 27 hours
    started = [a for a in answers if a.outcome is FireOutcome.STARTED]
    assert [(a.first.schedule_name, a.first.scheduled_for) for a in started] == [
        ("inventory", caracas(6, 13).astimezone(CARACAS)),
        ("sales", caracas(6, 13, 5).astimezone(CARACAS)),
    ]
    with runtime.engine.connect() as conn:
        runs = ledger.list_runs(conn, limit=10)
        missed = list_fires(conn, outcome=FireOutcome.MISSED, limit=500)
        sales_run = next(r for r in runs if r.job is Job.SALES)
        items = ledger.get_items(conn, sales_run.id)
        covered = {
            item.location_id: coverage.coverage(
                conn, location_id=item.location_id, start=caracas(5, 10, 5), end=caracas(6, 13, 5)
            )
            for item in items
        }
    assert [r.job for r in runs].count(Job.INVENTORY) == 2  # 10:00, then only 13:00 next day
    assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
    assert len(missed) == (54 - 1) + (54 - 1)  # 10:30 Mon ... 12:30 Tue, 10:35 ... 12:35
    assert len(items) == 19  # every store; the distribution centre has no sales
    for item in items:
        days = [window["day"] for window in item.windows or []]
        assert days == ["2026-01-05", "2026-01-06"], item.location_id  # one local day per piece
        assert _spans(covered[item.location_id], caracas(5, 10, 5), caracas(6, 13, 5))


def _spans(ranges: list[coverage.CoverageRange], start: datetime, end: datetime) -> bool:
    """Whether the ranges (final or provisional) leave no hole in ``[start, end)``."""
    cursor = start
    for covered in sorted(ranges):
        if covered.start > cursor:
            return False
        cursor = max(cursor, covered.end)
    return cursor >= end - timedelta(seconds=1)
