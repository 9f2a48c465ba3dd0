"""The subprocess launcher settling runs whose worker exited (both dialects).

Workers here are tiny real processes that exit with a chosen code; the run rows are arranged as
the worker would have left them. A worker that owned its run and died abandons it (worker_lost,
items failed, leases freed); a duplicate launch whose worker lost the claim leaves the live run
alone (the soak once saw such a worker abandon a run another worker was still loading).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.launchers import EXIT_NOT_CLAIMED
from fluxion_etl.launchers.subprocess import SubprocessLauncher
from fluxion_etl.store import leases, ledger

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def _exited(code: int) -> subprocess.Popen[bytes]:
    """A real child process that exited with ``code`` (negative: killed by that signal)."""
    if code < 0:
        script = f"import os; os.kill(os.getpid(), {-code})"
    else:
        script = f"raise SystemExit({code})"
    child = subprocess.Popen([sys.executable, "-c", script])
    child.wait(timeout=30)
    return child


def _running_run(engine: Engine, owner: str) -> int:
    with engine.begin() as conn:
        run_id = ledger.create_run(
            conn, RunRequest(job=Job.SALES, trigger=Trigger.SCHEDULE), now=NOW
        ).run_id
        ledger.claim_run(conn, run_id, owner=owner, now=NOW, deadline_at=NOW + timedelta(hours=1))
        ledger.create_items(conn, run_id, ["tienda_01"])
        leases.try_acquire(
            conn,
            job="sales",
            location_id="tienda_01",
            run_id=run_id,
            owner=owner,
            now=NOW,
            ttl=timedelta(minutes=2),
        )
    return run_id


def _settle(engine: Engine, run_id: int, child: subprocess.Popen[bytes]) -> ledger.RunRow:
    launcher = SubprocessLauncher(engine, ManualClock(NOW + timedelta(seconds=10)))
    launcher._children[run_id] = child  # as launch() records it
    launcher.poll()
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    return run


def test_a_worker_that_died_holding_its_run_abandons_it_with_its_items_and_leases(
    engine: Engine,
) -> None:
    child = _exited(-9)  # kill -9
    run_id = _running_run(engine, f"{socket.gethostname()}:{child.pid}:nonce")

    run = _settle(engine, run_id, child)

    assert (run.status, run.error_category) == (RunStatus.ABANDONED, "worker_lost")
    assert run.error_message == (
        f"worker process exited with code {child.returncode} before finishing the run"
    )
    with engine.connect() as conn:
        (item,) = ledger.get_items(conn, run_id)
        assert leases.holder(conn, "sales", "tienda_01") is None
    assert (item.status, item.error_category) == (ItemStatus.FAILED, "worker_lost")


def test_a_duplicate_worker_that_lost_the_claim_leaves_the_live_run_alone(engine: Engine) -> None:
    other_worker = f"{socket.gethostname()}:{os.getpid()}:nonce"  # not the child
    for code in (1, EXIT_NOT_CLAIMED):
        run_id = _running_run(engine, other_worker)
        run = _settle(engine, run_id, _exited(code))
        assert (run.status, run.owner, run.error_category) == (
            RunStatus.RUNNING,
            other_worker,
            None,
        )
        with engine.connect() as conn:
            holder = leases.holder(conn, "sales", "tienda_01")
            assert holder is not None
            assert holder.run_id == run_id
            leases.release_all(conn, run_id)
            conn.commit()


def test_a_worker_that_died_before_claiming_abandons_the_queued_run(engine: Engine) -> None:
    with engine.begin() as conn:
        run_id = ledger.create_run(
            conn, RunRequest(job=Job.SALES, trigger=Trigger.API), now=NOW
        ).run_id
    run = _settle(engine, run_id, _exited(1))
    assert (run.status, run.error_category) == (RunStatus.ABANDONED, "worker_lost")
