"""The pool launcher: runs execute in worker processes that start with the service and stay
(both dialects). Each run is executed once, by a worker (not the service's process); a worker that
dies holding a run abandons it and is replaced; closing stops every worker and refuses new runs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ops_support import TODAY, Chain, local, run_row, simulated_chain
from sqlalchemy import Engine, func, select

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.launchers import LaunchError
from fluxion_etl.launchers.pool import PoolLauncher
from fluxion_etl.service import Service
from fluxion_etl.store import schema
from fluxion_etl.store.ledger import RunRow


def _workers() -> set[int]:
    return {
        child.pid
        for child in multiprocessing.active_children()
        if child.name == "fluxion-run-worker" and child.pid is not None
    }


def _wait_for(what: Callable[[], Any], *, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def _owner_pid(run: RunRow) -> int:
    assert run.owner is not None
    host, pid, _ = run.owner.split(":", 2)
    assert host == socket.gethostname()
    return int(pid)


@contextmanager
def _pool_service(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[Service]:
    monkeypatch.setenv("FLUXION_CLOCK", "system")  # what the workers read, as `worker` does
    pooled = chain.settings.model_copy(update={"launcher": "pool", **settings})
    service = Service.open(pooled, chain.config, chain.clock)
    try:
        assert isinstance(service.launcher, PoolLauncher)
        yield service
    finally:
        service.stop(grace=30)


def _queue(chain: Chain, job: Job) -> int:
    request = RunRequest(job=job, trigger=Trigger.API, requested_by="test")
    return submit(
        chain.engine, request, config=chain.config, settings=chain.settings, clock=chain.clock
    ).run_id


def _final(engine: Engine, run_id: int) -> RunRow | None:
    run = run_row(engine, run_id)
    return run if RunStatus(run.status).is_final else None


def test_runs_execute_once_each_in_the_workers_which_stay(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _pool_service(chain, monkeypatch, pool_workers=2) as service,
    ):
        workers = _wait_for(lambda: len(_workers()) == 2 and _workers())
        runs = [_queue(chain, Job.INVENTORY), _queue(chain, Job.SALES)]
        for run_id in runs:
            service.launch(run_id)
        done = [_wait_for(lambda run_id=run_id: _final(engine, run_id)) for run_id in runs]

        assert [run.status for run in done] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
        assert {_owner_pid(run) for run in done} <= workers
        assert os.getpid() not in {_owner_pid(run) for run in done}
        service.launch(runs[0])  # launched again (a relaunch): the run has ended, nothing runs
        service.launcher.poll()
        assert _workers() == workers  # the same processes, still there for the next runs
        assert service.launcher.alive()
    assert _workers() == set()  # stopped with the service
    assert run_row(engine, runs[0]).status == RunStatus.SUCCEEDED
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema.runs)) == 2


@contextmanager
def _klk_that_never_answers() -> Iterator[str]:
    """A KLK that accepts connections and never answers: a run's first request hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_worker_that_dies_holding_a_run_abandons_it_and_is_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _klk_that_never_answers() as silent,
        _pool_service(
            chain, monkeypatch, pool_workers=1, klk_base_url=silent, klk_catalogue_read_timeout=120
        ) as service,
    ):
        (worker,) = _wait_for(_workers)
        run_id = _queue(chain, Job.INVENTORY)
        service.launch(run_id)
        running = _wait_for(
            lambda: (run := run_row(engine, run_id)).status == RunStatus.RUNNING and run
        )
        assert _owner_pid(running) == worker
        os.kill(worker, signal.SIGKILL)
        _wait_for(lambda: worker not in _workers() and not _pid_alive(worker))
        service.launcher.poll()

        run = run_row(engine, run_id)
        assert (run.status, run.error_category) == (RunStatus.ABANDONED, "worker_lost")
        assert run.error_message == (
            f"worker process exited with code {-signal.SIGKILL} before finishing the run"
        )
        (replacement,) = _wait_for(_workers)
        assert replacement != worker
        assert service.launcher.alive()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_closing_stops_the_workers_and_refuses_new_runs(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        with _pool_service(chain, monkeypatch, pool_workers=2) as service:
            _wait_for(lambda: len(_workers()) == 2)
        assert _workers() == set()
        assert not service.launcher.alive()
        with pytest.raises(LaunchError, match="shutting down"):
            service.launcher.launch(_queue(chain, Job.INVENTORY))
