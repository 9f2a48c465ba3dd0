"""How a queued run gets executed. A run is queued in the database first, then launched, so a crash
in between is recovered by the next start (``relaunch_stale_queued``).

Contract of a launcher:
- ``launch(run_id)`` returns quickly once execution has been handed off (a thread, a child process,
  an ECS task). It raises ``LaunchError`` when hand-off failed; the caller then fails the run with
  category ``launch`` and the reason (``fail_unlaunched``).
- ``poll()`` is called periodically by the service: it notices executions that ended without
  finishing their run (a dead child, a stopped ECS task) and marks those runs ``abandoned``
  (``worker_lost``, unfinished items failed, leases freed) with the reason — unless the execution
  was a duplicate launch that another process's worker won (``EXIT_NOT_CLAIMED``, or a run owned
  by another process): that run is alive, and the lease reaper watches it.
- ``holds(run_id)`` is True while the launcher has the run in hand (waiting for a thread or a
  worker, or executing): the service then does not relaunch it for having stayed queued.
- ``alive()`` tells readiness whether the launcher can take work; ``close(grace)`` stops taking
  work and waits up to ``grace`` seconds for running executions.
- ``hands_off_in_process`` is True when ``launch`` only hands the run to this process's own
  threads (no process spawned, no network call), so that the API may call it on its event loop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine

from fluxion_etl.domain.states import ErrorCategory, RunStatus
from fluxion_etl.errors import FluxionError
from fluxion_etl.store import ledger

# A worker that finds its run already claimed (a duplicate launch: another process executes it, or
# it has ended) exits with this code; a launcher must then leave the run alone.
EXIT_NOT_CLAIMED = 3


class LaunchError(FluxionError):
    """Handing a run off failed (capacity, permissions, process spawn)."""


class Launcher(Protocol):
    name: str
    hands_off_in_process: bool

    def launch(self, run_id: int) -> None: ...

    def holds(self, run_id: int) -> bool: ...

    def poll(self) -> None: ...

    def alive(self) -> bool: ...

    def close(self, grace: float) -> None: ...


def fail_unlaunched(
    engine: Engine, run_id: int, *, launcher: str, error: LaunchError, now: datetime
) -> str:
    """Fail the queued run ``run_id`` that ``launcher`` could not hand off (``error``) with
    category ``launch``, so that it never waits queued for nobody: the reason it records."""
    reason = f"could not be launched by the {launcher} launcher: {error}"
    with engine.begin() as conn:
        ledger.finish_run(
            conn,
            run_id,
            RunStatus.FAILED,
            now=now,
            error_category=ErrorCategory.LAUNCH.value,
            error_message=reason[:2000],
        )
    return reason


def launch_or_fail(launcher: Launcher, engine: Engine, run_id: int, *, now: datetime) -> str | None:
    """Hand ``run_id`` to ``launcher``; when it cannot, fail the run (``fail_unlaunched``) and
    return the reason recorded. None when the run was handed off."""
    try:
        launcher.launch(run_id)
    except LaunchError as exc:
        return fail_unlaunched(engine, run_id, launcher=launcher.name, error=exc, now=now)
    return None
