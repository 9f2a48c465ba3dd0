"""Cancelling a running run: it starts no more locations, however short the run (a heartbeat
comes every 20 s; a cancel must not wait for one). And what a failed location's item keeps."""

from __future__ import annotations

from engine_support import LOCATIONS, Chain, outcome

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.sim.faults import parse_faults
from fluxion_etl.store import ledger


def test_a_cancel_stops_the_next_locations_from_starting(chain: Chain) -> None:
    # One location at a time (in the config's order), and no heartbeat during the run.
    rt = chain.runtime(concurrency=1, heartbeat_seconds=60, lease_ttl_seconds=180)
    run_id = chain.submit(Job.INVENTORY, rt=rt)
    loaded: list[str] = []

    def on_progress(location_id: str, stage: str, _detail: str) -> None:
        if stage == "done":
            loaded.append(location_id)
            if len(loaded) == 1:  # asked while the run is between two locations
                with chain.engine.begin() as conn:
                    ledger.request_cancel(conn, run_id, by="ops", now=chain.clock.now())

    rt.on_progress = on_progress
    execute_run(rt, run_id)
    ran = outcome(chain.engine, run_id)

    assert ran.status is RunStatus.CANCELLED
    assert loaded == [LOCATIONS[0]]
    assert ran.items[LOCATIONS[0]].status is ItemStatus.SUCCEEDED
    assert {ran.items[loc].status for loc in LOCATIONS[1:]} == {ItemStatus.FAILED}


def test_a_failed_location_keeps_the_time_it_spent_before_failing(chain: Chain) -> None:
    """The run page's phase times of a failed store: KLK waited on, then failed."""
    chain.plan.replace(
        list(parse_faults("catalogue@tienda_02:latency=0.3;catalogue@tienda_02:error_body"))
    )

    ran = chain.run(Job.INVENTORY, locations=("tienda_02",))

    item = ran.items["tienda_02"]
    assert item.status is ItemStatus.FAILED
    assert item.extract_ms >= 300
