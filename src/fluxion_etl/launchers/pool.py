"""``pool``: runs execute in worker processes that start with the service and stay.

Each worker opens its own runtime once (the service's settings and configuration, the clock of
``FLUXION_CLOCK`` as ``fluxion-etl worker`` reads it, its own engine and KLK client), then
executes the runs it is handed, one at a time, for as long as the service runs. The service's
interpreter is left to the API, the scheduler and the control centre: with ``inline`` a run's
bookkeeping and decoding take the service's GIL from the event loop (under 200 concurrent trigger
calls that doubled their p99, bench/service.py), and with ``subprocess`` every run pays for a new
Python process. Workers run ``nice`` steps nicer than the service
(``FLUXION_SUBPROCESS_WORKER_NICE``, as the subprocess launcher's), so a busy API gets the cores
first and the runs get the rest.

One thread of the service (``pool``) owns the workers: each has a pipe of its own, and the thread
hands a waiting run to a worker that is ready and idle, reads what the workers report (ready, a
run taken, a run done, and each KLK request for the service's metrics) and sees a worker die the
moment it does (its process sentinel). ``launch`` only appends the run to the waiting list and
wakes that thread: nothing on the caller's side (the API's event loop) waits for a worker, a pipe
or a process start. A run already in hand (waiting, or executing) is not taken twice: the service
relaunches runs queued for 30 s, and with every worker busy a run may wait longer (``holds`` tells
it which it need not relaunch).

A worker that dies (killed, out of memory) while executing a run leaves that run abandoned
(``worker_lost``, ``settle_exited``) unless it finished or another process owns it, and a new
worker replaces it at once; a run sent to a worker that died before it said it took the run goes
to the next worker. Workers that die before they are ready, or are not ready within
``STARTUP_SECONDS`` (a start that cannot succeed), are replaced with a growing delay; after
``STARTUP_FAILURES`` in a row with none ready, the waiting runs fail with category ``launch`` and
the reason, and ``launch`` refuses new ones (the API answers 503, readiness turns false) until a
worker is ready again (before that, launched runs wait for a worker to be ready). The run of a dead
worker is settled in the database by the pool's thread, again later if the database cannot be
written then.

``close(grace)`` stops the workers: an idle one exits at once; one executing a run is sent SIGTERM
and, as ``fluxion-etl worker`` does, finishes its running locations and leaves the rest; those
still running after ``grace`` seconds are killed and their runs abandoned. Runs still waiting stay
queued in the database and are relaunched by the next service (``Service.maintain_once``). A
worker that gets SIGTERM from elsewhere (a process manager stopping the whole group) stops the
same way and is replaced; one whose service died without stopping it sees its pipe close and exits
once its run, if any, is done.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock, clock_from_spec
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.engine.runner import try_execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient, RequestEvent
from fluxion_etl.launchers import LaunchError, fail_unlaunched
from fluxion_etl.launchers.subprocess import lower_priority, settle_exited
from fluxion_etl.logs import configure_logging
from fluxion_etl.settings import Settings
from fluxion_etl.store import ledger
from fluxion_etl.store.db import create_db_engine

log = structlog.get_logger("fluxion.launcher")

# Spawned, not forked: the service has threads (the event loop's, the scheduler's) whose locks a
# fork could copy held.
CONTEXT = multiprocessing.get_context("spawn")
# Workers dying before they are ready, in a row, before the waiting runs fail (``launch``).
STARTUP_FAILURES = 3
MAX_RESPAWN_DELAY = 60.0  # seconds between starts once workers keep dying before they are ready
# How often an idle worker looks up from its pipe (a SIGTERM it got while waiting).
IDLE_CHECK_SECONDS = 2.0
STARTUP_SECONDS = 120.0  # a worker not ready by then is killed (a failed start)
SETTLE_RETRY_SECONDS = 5.0  # between tries to settle a dead worker's run while the database is down


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs to open a runtime as the service did."""

    settings: Settings
    config: ChainConfig
    nice: int


@dataclass(eq=False)
class _Worker:
    process: SpawnProcess
    conn: Connection  # the service's end of the worker's pipe
    started: float  # time.monotonic() when it was started
    ready: bool = False
    run_id: int | None = None  # the run sent to it
    taken: bool = False  # it said it took that run (before executing it)
    open: bool = True  # False once its pipe has closed (it is exiting)
    stopping: bool = False  # told to stop (the pool is closing)


@dataclass
class _State:
    """What the pool thread and ``launch`` share, under ``PoolLauncher._lock``."""

    workers: list[_Worker] = field(default_factory=list)
    waiting: deque[int] = field(default_factory=deque)
    closed: bool = False
    failing: str | None = None  # why runs are refused: workers keep dying before they are ready


class PoolLauncher:
    name = "pool"
    hands_off_in_process = True  # a list and a wake-up byte; the pool thread does the rest

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        setup: WorkerSetup,
        *,
        workers: int = 2,
        on_request: Callable[[RequestEvent], None] | None = None,
    ) -> None:
        """``on_request`` sees every KLK HTTP attempt of the workers' runs (the service's
        metrics), called on the pool's thread."""
        self._engine, self._clock, self._setup, self._size = engine, clock, setup, workers
        self._on_request = on_request
        self._lock = threading.Lock()
        self._state = _State()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        # the pool thread's own: failed starts in a row, when to start again, runs to settle
        self._failures = 0
        self._respawn_at = 0.0
        self._unsettled: list[tuple[int, int, int | None]] = []  # (run, worker pid, exit code)
        self._thread = threading.Thread(target=self._run, name="pool", daemon=True)
        self._thread.start()

    # --- the launcher contract -------------------------------------------------------------------

    def launch(self, run_id: int) -> None:
        with self._lock:
            state = self._state
            if state.closed:
                raise LaunchError("the service is shutting down and takes no new runs")
            if state.failing is not None:
                raise LaunchError(state.failing)
            if self._holds(run_id):
                return
            state.waiting.append(run_id)
            self._wake()

    def holds(self, run_id: int) -> bool:
        """Whether ``run_id`` waits for a worker or is being executed by one."""
        with self._lock:
            return self._holds(run_id)

    def poll(self) -> None:
        """The pool thread watches the workers; this only tells if that thread is gone."""
        if not self._thread.is_alive() and not self._state.closed:
            log.error("the pool's thread has stopped: runs are not executed")

    def alive(self) -> bool:
        state = self._state
        return not state.closed and state.failing is None and self._thread.is_alive()

    def close(self, grace: float) -> None:
        with self._lock:
            self._state.closed = True
            self._wake()
        self._thread.join(grace)
        with self._lock:  # what outlived the grace period (or a pool thread that failed)
            stragglers = [w for w in self._state.workers if w.process.is_alive()]
        for worker in stragglers:
            log.warning("run worker still running after the grace period; killed",
                        pid=worker.process.pid, run_id=worker.run_id)  # fmt: skip
            worker.process.kill()
        self._thread.join(10)
        with self._lock:
            if not self._thread.is_alive() and self._wake_write >= 0:
                os.close(self._wake_read)
                os.close(self._wake_write)
                self._wake_read = self._wake_write = -1

    # --- the pool thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception:  # a bug: the runs it holds must not wait for nobody
            log.exception("the pool's thread failed")
            self._give_up("the run worker pool failed (see the service log)")

    def _give_up(self, reason: str) -> None:
        """Refuse new runs, fail the waiting ones, stop the workers (they see their pipe end)."""
        with self._lock:
            self._state.failing = reason
            waiting, self._state.waiting = list(self._state.waiting), deque()
            workers = list(self._state.workers)
        for worker in workers:
            worker.process.terminate()
        self._fail(waiting, reason)

    def _step(self) -> bool:
        """One round: start and stop workers as needed, hand out waiting runs, then wait for
        something to happen. False once closed and every worker has exited."""
        with self._lock:
            closed, workers = self._state.closed, list(self._state.workers)
        if closed:
            if not workers:
                return False
            for worker in workers:
                self._stop(worker)
        else:
            self._retry_settling()
            self._start_missing(len(workers))
            self._kill_slow_starters(workers)
            self._hand_out()
        self._wait()
        return True

    def _wait(self) -> None:
        with self._lock:
            workers = list(self._state.workers)
        ready = wait(
            [self._wake_read]
            + [w.conn for w in workers if w.open]
            + [w.process.sentinel for w in workers],
            timeout=self._timeout(workers),
        )
        if self._wake_read in ready:
            os.read(self._wake_read, 4096)
        for worker in workers:
            if worker.open and worker.conn in ready:
                self._read(worker)
            if worker.process.sentinel in ready:
                self._bury(worker)

    def _timeout(self, workers: list[_Worker]) -> float | None:
        """Until the next thing to do unasked: a respawn, a start deadline, a settling retry."""
        if self._state.closed:
            return None
        now, due = time.monotonic(), []
        if len(workers) < self._size:
            due.append(self._respawn_at)
        due += [w.started + STARTUP_SECONDS for w in workers if not w.ready and not w.stopping]
        if self._unsettled:
            due.append(now + SETTLE_RETRY_SECONDS)
        return max(0.0, min(due) - now) if due else None

    def _start_missing(self, alive: int) -> None:
        if alive >= self._size or time.monotonic() < self._respawn_at:
            return
        for _ in range(self._size - alive):
            try:
                worker = self._spawn()
            except OSError as exc:  # out of processes or files: a start that failed
                self._failed_start(f"could not start a run worker process: {exc}")
                return
            with self._lock:
                self._state.workers.append(worker)

    def _spawn(self) -> _Worker:
        ours, theirs = CONTEXT.Pipe()
        process = CONTEXT.Process(
            target=work, args=(self._setup, theirs), name="fluxion-run-worker", daemon=True
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker holds its end: when it dies, ours reads end-of-file
        return _Worker(process, ours, time.monotonic())

    def _kill_slow_starters(self, workers: list[_Worker]) -> None:
        """A worker not ready ``STARTUP_SECONDS`` after it started is killed (a failed start)."""
        now = time.monotonic()
        for worker in workers:
            if not worker.ready and not worker.stopping and now - worker.started > STARTUP_SECONDS:
                log.error("run worker not ready in time; killed", pid=worker.process.pid)
                worker.stopping = True
                worker.process.kill()

    def _hand_out(self) -> None:
        while True:
            with self._lock:
                state = self._state
                idle = [w for w in state.workers if w.ready and w.open and w.run_id is None]
                if state.closed or not idle or not state.waiting:
                    return
                worker, run_id = idle[0], state.waiting.popleft()
                worker.run_id, worker.taken = run_id, False
            try:
                worker.conn.send(run_id)
            except OSError:  # it died meanwhile: the run waits for the next worker
                with self._lock:
                    worker.run_id, worker.open = None, False
                    self._state.waiting.appendleft(run_id)

    def _read(self, worker: _Worker) -> None:
        try:
            kind, run_id = worker.conn.recv()
        except Exception:  # end of file, or a message cut short: it is exiting
            worker.open = False  # its sentinel says when it is gone
            return
        if kind == "klk":
            self._observe(run_id)
            return
        with self._lock:
            if kind == "ready":
                worker.ready = True
                self._failures, self._state.failing = 0, None
            elif kind == "taken" and worker.run_id == run_id:
                worker.taken = True
            elif kind == "declined":  # it is stopping: the run goes to the next worker, if any
                worker.run_id, worker.open = None, False
                if not self._state.closed:
                    self._state.waiting.appendleft(run_id)
            elif kind == "done" and worker.run_id == run_id:
                worker.run_id = None

    def _observe(self, event: object) -> None:
        if self._on_request is None or not isinstance(event, RequestEvent):
            return
        try:
            self._on_request(event)
        except Exception:  # metrics must not stop the pool
            log.exception("could not record a worker's KLK request")

    def _bury(self, worker: _Worker) -> None:
        """``worker`` has exited: settle the run it held, count a failed start."""
        while worker.open and worker.conn.poll():
            self._read(worker)  # what it said before it went (a run done)
        worker.process.join()
        code = worker.process.exitcode  # None for a moment if another thread reaped it
        for _ in range(100):
            if code is not None:
                break
            time.sleep(0.01)
            code = worker.process.exitcode
        pid, run_id = worker.process.pid or 0, worker.run_id
        with self._lock:
            self._state.workers.remove(worker)
            closed = self._state.closed
            if run_id is not None and not worker.taken and not closed:
                self._state.waiting.appendleft(run_id)  # sent as it died: never executed
        worker.conn.close()
        worker.process.close()
        if run_id is not None and worker.taken:
            self._unsettled.append((run_id, pid, code))
            self._retry_settling()
        if closed:
            return
        if worker.ready:
            log.warning("run worker died; replaced", pid=pid, exit_code=code)
            return
        self._failed_start(f"run worker processes exit before they are ready (the last with "
                           f"code {code}); see the service log")  # fmt: skip

    def _retry_settling(self) -> None:
        """Settle the runs of dead workers (``settle_exited``); kept for the next round while
        the database cannot be written. A run still queued (its worker died between saying it
        took it and claiming it) goes to the next worker instead."""
        unsettled, self._unsettled = self._unsettled, []
        for index, (run_id, pid, code) in enumerate(unsettled):
            try:
                with self._engine.connect() as conn:
                    run = ledger.get_run(conn, run_id)
                if run is not None and run.status == RunStatus.QUEUED:
                    with self._lock:
                        if not self._state.closed:
                            self._state.waiting.appendleft(run_id)
                    continue
                settle_exited(self._engine, self._clock, run_id, pid, code)
            except SQLAlchemyError as exc:
                log.warning("could not settle a dead worker's run; retrying",
                            run_id=run_id, error=str(exc).splitlines()[0][:200])  # fmt: skip
                self._unsettled = unsettled[index:] + self._unsettled
                return

    def _failed_start(self, reason: str) -> None:
        self._failures += 1
        self._respawn_at = time.monotonic() + min(MAX_RESPAWN_DELAY, 2.0 ** min(self._failures, 6))
        log.error("run worker failed to start", reason=reason, in_a_row=self._failures)
        if self._failures < STARTUP_FAILURES:
            return
        with self._lock:
            if any(w.ready for w in self._state.workers):
                return
            self._state.failing = reason
            waiting, self._state.waiting = list(self._state.waiting), deque()
        self._fail(waiting, reason)

    def _fail(self, run_ids: list[int], reason: str) -> None:
        """Fail queued runs with category ``launch``: best effort (the database may be down;
        a run left queued is relaunched by the service after 30 s)."""
        for run_id in run_ids:
            try:
                fail_unlaunched(
                    self._engine, run_id, launcher=self.name, error=LaunchError(reason),
                    now=self._clock.now(),
                )  # fmt: skip
            except SQLAlchemyError as exc:
                log.warning("could not fail an unlaunched run", run_id=run_id,
                            error=str(exc).splitlines()[0][:200])  # fmt: skip

    def _stop(self, worker: _Worker) -> None:
        """Closing: an idle worker is told to exit, a busy one to stop after its locations."""
        if worker.stopping:
            return
        worker.stopping = True
        if worker.run_id is None and worker.open:
            try:
                worker.conn.send(None)
            except OSError:
                worker.open = False
        elif worker.run_id is not None and worker.process.is_alive():
            worker.process.terminate()  # SIGTERM: it finishes its running locations

    def _holds(self, run_id: int) -> bool:
        state = self._state
        return run_id in state.waiting or any(w.run_id == run_id for w in state.workers)

    def _wake(self) -> None:
        """Under ``_lock`` (``close`` closes the pipe under it)."""
        if self._wake_write < 0:
            return
        with contextlib.suppress(BlockingIOError):  # the pipe is full: it is awake already
            os.write(self._wake_write, b"\0")


class _StopFlag:
    """Set by SIGTERM: a plain attribute, safe to set from a signal handler."""

    requested = False

    def set(self, *_: object) -> None:
        self.requested = True


class _Reports:
    """A worker's end of its pipe: what it tells the service, whole messages from any thread
    (a run's locations call KLK from several)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, kind: str, payload: object) -> None:
        with self._lock:
            self._conn.send((kind, payload))

    def klk_request(self, event: RequestEvent) -> None:
        """For the service's KLK metrics; a service gone must not fail the run's KLK call."""
        with contextlib.suppress(OSError):
            self.send("klk", event)


def work(setup: WorkerSetup, conn: Connection) -> None:
    """A worker process: report ready, then execute the runs sent on ``conn`` until told to
    stop (``None``, SIGTERM) or the service is gone (the pipe closes)."""
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the service stops us
    lower_priority(0, setup.nice)
    settings = setup.settings
    configure_logging(settings.log_format, quiet=True)
    reports = _Reports(conn)
    engine = create_db_engine(settings.database_url)
    klk = KlkClient.from_settings(settings, on_request=reports.klk_request)
    clock = clock_from_spec(os.environ.get("FLUXION_CLOCK"))
    rt = Runtime(settings=settings, config=setup.config, engine=engine, klk=klk, clock=clock)
    rt.stop_requested = lambda: stop.requested
    try:
        reports.send("ready", None)
        while not stop.requested:
            if not conn.poll(IDLE_CHECK_SECONDS):
                continue
            run_id = conn.recv()
            if run_id is None:
                break
            if stop.requested:
                reports.send("declined", run_id)
                break
            reports.send("taken", run_id)  # before the claim: a run sent as it died is resent
            _execute(rt, run_id)
            reports.send("done", run_id)
    except (EOFError, BrokenPipeError):
        pass  # the service is gone
    finally:
        klk.close()
        engine.dispose()


def _execute(rt: Runtime, run_id: int) -> None:
    try:
        try_execute_run(rt, run_id)
    except Exception:  # the run's own failure is in the ledger; the worker takes the next
        log.exception("run crashed", run_id=run_id)
