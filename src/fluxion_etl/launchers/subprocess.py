"""``subprocess``: each run executes in a child ``fluxion-etl worker --run-id ID`` process.

Workers start ``nice`` steps nicer than the serve process (``FLUXION_SUBPROCESS_WORKER_NICE``,
default 10): each is a Python process that spends its first few hundred milliseconds of CPU
importing, and a burst of API calls starts several at once on the cores that answer the calls.
At a lower priority the kernel gives the API's event loop the core first; the workers use what is
left (all of it when the API is idle), so a run is slower only while the API is busy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import structlog
from sqlalchemy import Engine

from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.launchers import EXIT_NOT_CLAIMED, LaunchError
from fluxion_etl.store import leases, ledger

log = structlog.get_logger("fluxion.launcher")


class SubprocessLauncher:
    name = "subprocess"
    hands_off_in_process = False  # spawns a worker process

    def __init__(
        self, engine: Engine, clock: Clock, *, env: dict[str, str] | None = None, nice: int = 0
    ) -> None:
        self._engine, self._clock = engine, clock
        self._env = {**os.environ, **(env or {})}
        self._nice = nice
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def launch(self, run_id: int) -> None:
        if self._closed:
            raise LaunchError("the service is shutting down and takes no new runs")
        command = [sys.executable, "-m", "fluxion_etl", "worker", "--run-id", str(run_id)]
        try:
            child = subprocess.Popen(command, env=self._env, stdin=subprocess.DEVNULL)  # noqa: S603
        except OSError as exc:
            raise LaunchError(f"could not start a worker process: {exc}") from exc
        lower_priority(child.pid, self._nice)
        with self._lock:
            self._children[run_id] = child
        with self._engine.begin() as conn:
            ledger.set_external_ref(conn, run_id, f"pid:{child.pid}")

    def holds(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._children

    def poll(self) -> None:
        """A worker that exited without finishing its run leaves it abandoned (with the code)."""
        with self._lock:
            exited = {rid: c for rid, c in self._children.items() if c.poll() is not None}
            for rid in exited:
                del self._children[rid]
        for run_id, child in exited.items():
            settle_exited(self._engine, self._clock, run_id, child.pid, child.returncode)

    def alive(self) -> bool:
        return not self._closed

    def close(self, grace: float) -> None:
        """Workers are independent processes: let them finish within the grace period."""
        self._closed = True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if all(c.poll() is not None for c in self._children.values()):
                    break
            time.sleep(0.2)
        self.poll()


def settle_exited(engine: Engine, clock: Clock, run_id: int, pid: int, code: int | None) -> None:
    """The worker process ``pid`` that was given ``run_id`` exited with ``code``: the run is
    abandoned (``worker_lost``) unless it has ended, the worker lost the claim to another
    process (``EXIT_NOT_CLAIMED``, or a running run owned by another), as a duplicate launch."""
    if code == EXIT_NOT_CLAIMED:
        return  # a duplicate launch: another process executes the run (or it has ended)
    with engine.begin() as conn:
        run = ledger.get_run(conn, run_id)
        if run is None or RunStatus(run.status).is_final:
            return
        if run.status == RunStatus.RUNNING and not _owned_by(run.owner, pid):
            return  # another worker claimed it; the lease reaper watches that one
        message = f"worker process exited with code {code} before finishing the run"
        leases.abandon_run(conn, run_id, now=clock.now(), message=message)
    log.warning("worker died", run_id=run_id, exit_code=code)


def lower_priority(pid: int, steps: int) -> None:
    """Make the process ``pid`` (0: this one) ``steps`` nicer than this one (at most 19, the
    lowest priority).

    Set from here after the start, not in the child with ``preexec_fn``: that makes ``subprocess``
    fork (copy the serve process's page tables, holding the GIL, so the event loop stops) instead
    of vfork. The worker runs at our priority only until this call, a few milliseconds at most.
    A failure costs responsiveness, not the run: it is logged and the worker keeps running.
    """
    if steps <= 0:
        return
    try:
        target = min(os.getpriority(os.PRIO_PROCESS, 0) + steps, 19)
        os.setpriority(os.PRIO_PROCESS, pid, target)
    except OSError as exc:
        log.warning("could not lower the worker's priority", pid=pid, error=str(exc))


def _owned_by(owner: str | None, pid: int) -> bool:
    """Whether a run's owner (``host:pid:nonce``) is the process ``pid`` of this host."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    return host == socket.gethostname() and rest.partition(":")[0] == str(pid)
