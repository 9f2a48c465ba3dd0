"""``pool``: runs execute in worker processes that start with the service and stay.

Each worker opens its own runtime once (the service's settings and configuration, the clock of
``FLUXION_CLOCK`` as ``fluxion-etl worker`` reads it, its own engine and KLK client), then
executes the runs it is handed, one at a time, for as long as the service runs. The service's
interpreter is left to the API, the scheduler and the control centre: with ``inline`` a run's
bookkeeping and decoding take the service's GIL from the event loop (under 200 concurrent trigger
calls that doubled their p99, bench/service.py), and with ``subprocess`` every run pays for a new
Python process.

Workers run ``nice`` steps nicer than the service (``FLUXION_SUBPROCESS_WORKER_NICE``, as the
subprocess launcher's), so a busy API gets the cores first and the runs get the rest.

``launch`` puts the run's id on a queue the workers share (a pipe written by this process's own
feeder thread: nothing waits for a worker); a run already in hand (queued for a worker, or being
executed: the service relaunches runs queued for 30 s, and with every worker busy a run may wait
longer) is not queued twice. A worker reports each run it takes before executing it and when it
is done, so ``poll`` knows what a worker held when it died: that run is abandoned
(``worker_lost``) unless it finished or another process owns it, and a new worker replaces the
dead one. A run whose id was queued but not taken when the service stops stays queued in the
database and is relaunched by the service (``Service.maintain_once``), as after a crash.

``close(grace)`` tells every worker to stop: a running run finishes its running locations and
leaves the rest (as ``worker`` does on SIGTERM); workers still running after ``grace`` seconds are
killed and their runs abandoned.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Event as EventType

import structlog
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock, clock_from_spec
from fluxion_etl.engine.runner import try_execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.launchers import LaunchError
from fluxion_etl.launchers.subprocess import settle_exited
from fluxion_etl.logs import configure_logging
from fluxion_etl.settings import Settings
from fluxion_etl.store.db import create_db_engine

log = structlog.get_logger("fluxion.launcher")

# Spawned, not forked: the service has threads (the event loop's, the scheduler's) whose locks a
# fork could copy held.
CONTEXT = multiprocessing.get_context("spawn")
Report = tuple[int, int, bool]  # (worker pid, run id, done: False when taken, True when done)


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs to open a runtime as the service did."""

    settings: Settings
    config: ChainConfig
    nice: int


class PoolLauncher:
    name = "pool"
    hands_off_in_process = True  # a queue written by this process's feeder thread

    def __init__(
        self, engine: Engine, clock: Clock, setup: WorkerSetup, *, workers: int = 2
    ) -> None:
        self._engine, self._clock, self._setup = engine, clock, setup
        self._inbox: multiprocessing.Queue[int | None] = CONTEXT.Queue()
        # written straight to the pipe (no feeder thread): a report is sent before the worker
        # goes on, so a worker killed while executing a run has always reported taking it
        self._reports: SimpleQueue[Report] = CONTEXT.SimpleQueue()
        self._stopping = CONTEXT.Event()
        self._workers: list[SpawnProcess] = []
        self._holding: dict[int, int] = {}  # worker pid -> the run it executes
        self._in_hand: set[int] = set()  # queued for a worker or being executed
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(workers):
            self._workers.append(self._start_worker())

    def _start_worker(self) -> SpawnProcess:
        worker = CONTEXT.Process(
            target=work,
            args=(self._setup, self._inbox, self._reports, self._stopping),
            name="fluxion-run-worker",
            daemon=True,
        )
        worker.start()
        return worker

    def launch(self, run_id: int) -> None:
        with self._lock:
            if self._closed:
                raise LaunchError("the service is shutting down and takes no new runs")
            if not any(worker.is_alive() for worker in self._workers):
                raise LaunchError("no run worker process is alive (see the service log)")
            self._read_reports()
            if run_id in self._in_hand:
                return
            self._in_hand.add(run_id)
            self._inbox.put(run_id)

    def poll(self) -> None:
        """A worker that died holding a run abandons it (``settle_exited``); a new worker
        replaces it unless the service is stopping."""
        with self._lock:
            self._read_reports()
            dead = [worker for worker in self._workers if worker.exitcode is not None]
            for worker in dead:
                self._workers.remove(worker)
                if not self._closed:
                    self._workers.append(self._start_worker())
            held = [(worker, self._holding.pop(worker.pid or 0, None)) for worker in dead]
            self._in_hand.difference_update(run_id for _, run_id in held if run_id is not None)
        for worker, run_id in held:
            code = worker.exitcode
            if run_id is not None:
                settle_exited(self._engine, self._clock, run_id, worker.pid or 0, code)
            if not self._closed:
                log.warning("run worker died; replaced", pid=worker.pid, exit_code=code)

    def _read_reports(self) -> None:
        while not self._reports.empty():
            pid, run_id, done = self._reports.get()
            if done:
                self._holding.pop(pid, None)
                self._in_hand.discard(run_id)
            else:
                self._holding[pid] = run_id

    def alive(self) -> bool:
        return not self._closed and any(worker.is_alive() for worker in self._workers)

    def close(self, grace: float) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        self._stopping.set()
        for _ in workers:
            self._inbox.put(None)  # wakes a worker waiting for a run
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.is_alive():
                log.warning("run worker still running after the grace period; killed",
                            pid=worker.pid)  # fmt: skip
                worker.kill()
                worker.join(5)
        self.poll()
        self._reports.close()
        self._inbox.close()
        self._inbox.cancel_join_thread()  # ids never taken stay queued in the database


def work(
    setup: WorkerSetup,
    inbox: multiprocessing.Queue[int | None],
    reports: SimpleQueue[Report],
    stopping: EventType,
) -> None:
    """A worker process: execute the runs of ``inbox`` until told to stop."""
    # Ctrl-C reaches the whole process group: the service stops its workers itself (close)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    _lower_own_priority(setup.nice)
    settings = setup.settings
    configure_logging(settings.log_format, quiet=True)
    engine = create_db_engine(settings.database_url)
    klk = KlkClient.from_settings(settings)
    clock = clock_from_spec(os.environ.get("FLUXION_CLOCK"))
    rt = Runtime(settings=settings, config=setup.config, engine=engine, klk=klk, clock=clock)
    rt.stop_requested = stopping.is_set
    try:
        while not stopping.is_set():
            run_id = inbox.get()
            if run_id is None:
                break
            reports.put((os.getpid(), run_id, False))
            _execute(rt, run_id)
            reports.put((os.getpid(), run_id, True))
    finally:
        klk.close()
        engine.dispose()


def _execute(rt: Runtime, run_id: int) -> None:
    try:
        try_execute_run(rt, run_id)
    except Exception:  # the run's own failure is in the ledger; the worker takes the next
        log.exception("run crashed", run_id=run_id)


def _lower_own_priority(steps: int) -> None:
    if steps <= 0:
        return
    try:
        os.nice(steps)
    except OSError as exc:
        log.warning("could not lower the run worker's priority", error=str(exc))
