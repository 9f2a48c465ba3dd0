"""``worker`` (execute one queued run), ``serve`` (API + launcher + scheduler) and ``demo``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from fluxion_etl.cli.common import open_runtime
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.engine.runner import execute_run


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    run_id: Annotated[int, typer.Option("--run-id", help="The queued run to execute.")],
) -> None:
    """Execute one queued run and exit (0 succeeded, 1 otherwise). Used by the subprocess and ECS
    launchers; SIGTERM lets running locations finish and leaves the rest to the next run."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with open_runtime() as rt:
        rt.stop_requested = stopping.is_set
        status = execute_run(rt, run_id)
    typer.echo(f"run {run_id}: {status.value}")
    raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)
