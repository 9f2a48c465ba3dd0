"""No overlap (SPEC §4.3): two runs started at once for the same location never load it at the same
time; the one that meets the lease taken marks the location ``skipped_busy`` and says who holds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine_support import TODAY, Chain, Outcome, assert_sales_equal_served, outcome

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime

STORE = "tienda_01"
PATIENCE = 60.0  # seconds a loading run waits at most for the other run to finish (usually ms)


class _LoadWatch:
    """Sees which runs are inside a load of STORE; a run that got in waits there until the other
    run has finished, so a second run able to get in as well would be caught in the act."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside: set[str] = set()
        self.most_inside = 0
        self.finished = {name: threading.Event() for name in ("a", "b")}

    def hook(self, name: str) -> Callable[[str, str, str], None]:
        other = "b" if name == "a" else "a"

        def on_progress(location_id: str, stage: str, _detail: str) -> None:
            if location_id != STORE:
                return
            if stage == "extract":
                with self._lock:
                    self.inside.add(name)
                    self.most_inside = max(self.most_inside, len(self.inside))
                self.finished[other].wait(PATIENCE)
            elif stage == "done":
                with self._lock:
                    self.inside.discard(name)

        return on_progress


def test_two_runs_of_one_location_started_at_once_never_load_it_together(chain: Chain) -> None:
    watch = _LoadWatch()
    runtimes: dict[str, Runtime] = {}
    for name in ("a", "b"):
        runtimes[name] = chain.runtime()
        runtimes[name].on_progress = watch.hook(name)
    run_ids = {name: chain.submit(Job.SALES, locations=(STORE,)) for name in runtimes}
    start = threading.Barrier(2)

    def run(name: str) -> None:
        start.wait()
        try:
            execute_run(runtimes[name], run_ids[name])
        finally:
            watch.finished[name].set()

    threads = [threading.Thread(target=run, args=(name,)) for name in runtimes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * PATIENCE)
    outcomes: dict[str, Outcome] = {n: outcome(chain.engine, r) for n, r in run_ids.items()}

    assert watch.most_inside == 1, "the two runs were loading the location at the same time"
    statuses = sorted(o.items[STORE].status for o in outcomes.values())
    assert statuses == [ItemStatus.SKIPPED_BUSY, ItemStatus.SUCCEEDED]
    loaded = next(o for o in outcomes.values() if o.items[STORE].status is ItemStatus.SUCCEEDED)
    busy = next(o for o in outcomes.values() if o.items[STORE].status is ItemStatus.SKIPPED_BUSY)
    assert loaded.status is RunStatus.SUCCEEDED
    assert busy.status is RunStatus.FAILED, "a run that synced nothing is not a success"
    assert busy.run.error_category == busy.items[STORE].error_category == "busy"
    assert busy.items[STORE].error_message == f"busy: run {loaded.run.id} holds this location"
    assert busy.items[STORE].fetched == 0
    assert_sales_equal_served(chain, STORE, [TODAY])
