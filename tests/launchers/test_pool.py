"""The pool launcher: runs execute in worker processes that start with the service and stay.

Each run is executed once, by a worker (not the service's process); a worker killed while it
executes a run abandons that run and is replaced; killing or stopping one idle worker stalls no
other; workers that cannot start fail the waiting runs and refuse new ones until one starts;
closing kills what outlives the grace period and leaves waiting runs queued. The first two on
both dialects, the rest on SQLite (they test processes, not the store)."""

from __future__ import annotations

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
from structlog.testing import capture_logs

from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.launchers import LaunchError, pool
from fluxion_etl.launchers.pool import PoolLauncher
from fluxion_etl.service import Service
from fluxion_etl.settings import load_settings
from fluxion_etl.store import ledger, schema
from fluxion_etl.store.ledger import RunRow

SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def _workers() -> set[int]:
    """The live spawned children of this process (read from /proc: ``active_children`` would
    reap them, racing the pool's thread for their exit codes)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in task.read_text().split():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[0] != "Z" and b"spawn_main" in command:
                found.add(int(pid))
    return found


def _gone(pid: int) -> bool:
    """Exited (a zombie, or reaped): its files, its end of the pipe included, are closed."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


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
    chain: Chain, monkeypatch: pytest.MonkeyPatch, *, grace: float = 30, **settings: Any
) -> Iterator[Service]:
    monkeypatch.setenv("FLUXION_CLOCK", "system")  # what the workers read, as `worker` does
    pooled = chain.settings.model_copy(update={"launcher": "pool", **settings})
    service = Service.open(pooled, chain.config, chain.clock)
    try:
        assert isinstance(service.launcher, PoolLauncher)
        yield service
    finally:
        service.stop(grace=grace)


def _queue(chain: Chain, job: Job = Job.INVENTORY) -> int:
    request = RunRequest(job=job, trigger=Trigger.API, requested_by="test")
    return submit(
        chain.engine, request, config=chain.config, settings=chain.settings, clock=chain.clock
    ).run_id


def _final(engine: Engine, run_id: int) -> RunRow | None:
    run = run_row(engine, run_id)
    return run if RunStatus(run.status).is_final else None


def _executed(service: Service, chain: Chain, job: Job = Job.INVENTORY) -> RunRow:
    run_id = _queue(chain, job)
    service.launch(run_id)
    run: RunRow = _wait_for(lambda: _final(chain.engine, run_id))
    return run


@contextmanager
def _klk_that_never_answers() -> Iterator[str]:
    """A KLK that accepts connections and never answers: a run's first request hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def _one_worker_and_a_silent_klk(
    chain: Chain, monkeypatch: pytest.MonkeyPatch, *, grace: float = 30
) -> Iterator[Service]:
    """A pool of one worker whose runs hang on their first KLK request (for two minutes)."""
    with (
        _klk_that_never_answers() as silent,
        _pool_service(
            chain, monkeypatch, grace=grace, pool_workers=1, klk_base_url=silent,
            klk_catalogue_read_timeout=120,
        ) as service,
    ):  # fmt: skip
        yield service


def _running(engine: Engine, run_id: int) -> RunRow | None:
    run = run_row(engine, run_id)
    return run if run.status == RunStatus.RUNNING else None


def _every_location_started(engine: Engine, run_id: int) -> bool:
    with engine.connect() as conn:
        items = ledger.get_items(conn, run_id)
    return bool(items) and all(item.status == ItemStatus.RUNNING for item in items)


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
        owners = {_owner_pid(run) for run in done}
        assert owners <= workers
        assert os.getpid() not in owners
        # each worker says it is done after the run has ended in the ledger
        _wait_for(lambda: not any(service.launcher.holds(run_id) for run_id in runs))
        assert _workers() == workers  # the same processes, still there for the next runs
        nicer = min(os.getpriority(os.PRIO_PROCESS, 0) + chain.settings.subprocess_worker_nice, 19)
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in owners} == {nicer}  # (running)
        assert service.launcher.alive()
    assert _workers() == set()  # stopped with the service
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(schema.runs)) == 2


def test_a_worker_killed_while_executing_a_run_abandons_it_and_is_replaced(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _one_worker_and_a_silent_klk(chain, monkeypatch) as service,
    ):
        (worker,) = _wait_for(_workers)
        run_id = _queue(chain)
        service.launch(run_id)
        assert service.launcher.holds(run_id)
        running = _wait_for(lambda: _running(engine, run_id))
        assert _owner_pid(running) == worker

        os.kill(worker, signal.SIGKILL)
        run: RunRow = _wait_for(lambda: _final(engine, run_id))  # settled by the pool's thread

        assert (run.status, run.error_category) == (RunStatus.ABANDONED, "worker_lost")
        assert run.error_message == (
            f"worker process exited with code {-signal.SIGKILL} before finishing the run"
        )
        (replacement,) = _wait_for(lambda: _workers() - {worker})
        assert replacement != worker
        assert not service.launcher.holds(run_id)
        assert service.launcher.alive()


@SQLITE_ONLY
def test_the_klk_requests_of_the_workers_runs_reach_the_services_metrics(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _pool_service(chain, monkeypatch, pool_workers=1) as service,
    ):
        chain.fault("sales@tienda_03:http_500")
        run = _executed(service, chain, Job.SALES)
        assert run.status == RunStatus.PARTIAL
        # the worker reports its requests before it says it is done with the run
        _wait_for(lambda: not service.launcher.holds(run.id))
        metrics = service.context.metrics
        assert metrics is not None
        text = metrics.render()[0].decode()

    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fluxion_klk_")
    }
    calls = samples['fluxion_klk_request_duration_seconds_count{call="ventas"}']
    assert calls >= len(chain.config.locations)  # one request a store at least
    assert samples['fluxion_klk_errors_total{call="ventas",category="http_status"}'] == 1


@SQLITE_ONLY
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killing_or_stopping_an_idle_worker_stalls_no_other(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, how: signal.Signals
) -> None:
    """Each worker has a pipe of its own: one killed while it waits for a run holds no lock
    the others need; one stopped (SIGTERM from elsewhere) stops alone and is replaced."""
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _pool_service(chain, monkeypatch, pool_workers=2) as service,
    ):
        first, second = sorted(_wait_for(lambda: len(_workers()) == 2 and _workers()))
        owners: set[int] = set()
        launched: list[int] = []

        def both_have_executed_a_run() -> bool:  # so both are ready
            pair = [_queue(chain, Job.INVENTORY), _queue(chain, Job.SALES)]
            for run_id in pair:
                service.launch(run_id)
            launched.extend(pair)
            owners.update(_owner_pid(_wait_for(lambda r=r: _final(engine, r))) for r in pair)
            return owners == {first, second}

        _wait_for(both_have_executed_a_run)
        _wait_for(lambda: not any(service.launcher.holds(run_id) for run_id in launched))  # idle
        os.kill(first, how)
        _wait_for(lambda: _gone(first))

        runs = [_executed(service, chain) for _ in range(3)]

        assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 3
        assert len(_wait_for(lambda: len(_workers()) == 2 and _workers())) == 2
        assert second in _workers()


@SQLITE_ONLY
def test_workers_that_cannot_start_fail_the_waiting_runs_until_one_starts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "MAX_RESPAWN_DELAY", 0.1)
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        monkeypatch.setenv("FLUXION_CLOCK", "nonsense")  # read by the workers only
        pooled = chain.settings.model_copy(update={"launcher": "pool", "pool_workers": 1})
        service = Service.open(pooled, chain.config, chain.clock)
        try:
            waiting = _queue(chain)
            service.launch(waiting)
            run: RunRow = _wait_for(lambda: _final(engine, waiting))

            assert (run.status, run.error_category) == (RunStatus.FAILED, "launch")
            assert run.error_message is not None
            assert "exit before they are ready" in run.error_message
            assert not service.launcher.alive()
            with pytest.raises(LaunchError, match="exit before they are ready"):
                service.launcher.launch(_queue(chain))

            monkeypatch.setenv("FLUXION_CLOCK", "system")  # the next worker starts
            _wait_for(service.launcher.alive)
            assert _executed(service, chain).status == RunStatus.SUCCEEDED
        finally:
            service.stop(grace=30)


@SQLITE_ONLY
def test_closing_kills_what_outlives_the_grace_and_leaves_waiting_runs_queued(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        with _one_worker_and_a_silent_klk(chain, monkeypatch, grace=1) as service:
            _wait_for(_workers)
            hanging, waiting = _queue(chain), _queue(chain, Job.SALES)
            service.launch(hanging)
            # started and hanging (a stop before a location starts leaves it to the next run)
            _wait_for(lambda: _every_location_started(engine, hanging))
            service.launch(waiting)
            assert service.launcher.holds(waiting)

        assert _workers() == set()
        assert not service.launcher.alive()
        assert run_row(engine, hanging).status == RunStatus.ABANDONED  # killed after 1 s
        assert run_row(engine, waiting).status == RunStatus.QUEUED  # for the next service
        with pytest.raises(LaunchError, match="shutting down"):
            service.launcher.launch(waiting)


@SQLITE_ONLY
def test_the_service_relaunches_only_the_queued_runs_no_worker_holds(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs queued for 30 s are relaunched (a crash between queueing and launching); a run that
    waits for the pool's one busy worker, or is being executed, is in hand: not relaunched."""
    with (
        simulated_chain(engine, start=local(TODAY, 10)) as chain,
        _one_worker_and_a_silent_klk(chain, monkeypatch, grace=1) as service,
    ):
        _wait_for(_workers)
        executing, waiting, forgotten = _queue(chain), _queue(chain, Job.SALES), _queue(chain)
        service.launch(executing)
        _wait_for(lambda: _running(engine, executing))
        service.launch(waiting)
        chain.clock.advance(seconds=31)

        with capture_logs() as logs:
            service.maintain_once()

        relaunched = [e["run_id"] for e in logs if e["event"].startswith("relaunching")]
        assert relaunched == [forgotten]
        assert service.launcher.holds(forgotten)  # now waiting for the worker too


@SQLITE_ONLY
def test_closing_before_any_worker_started_and_twice_is_harmless(engine: Engine) -> None:
    setup = pool.WorkerSetup(load_settings(database_url=str(engine.url)), load_config(None), 0)
    launcher = PoolLauncher(engine, ManualClock(local(TODAY, 10)), setup, workers=2)

    launcher.close(grace=5)
    launcher.close(grace=5)

    assert not launcher.alive()
    assert _workers() == set()
    with pytest.raises(LaunchError, match="shutting down"):
        launcher.launch(1)
