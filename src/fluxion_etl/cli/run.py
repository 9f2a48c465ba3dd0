"""``run`` (start a run and wait for it), ``runs`` (the ledger) and ``locations`` commands."""

from __future__ import annotations

import getpass
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fluxion_etl.cli.common import (
    is_terminal,
    open_runtime,
    parse_date,
    print_json,
    print_table,
)
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.domain.windows import local_date
from fluxion_etl.engine.runner import execute_run, locations_for
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.engine.submit import submit
from fluxion_etl.errors import BadInputError
from fluxion_etl.store import leases, ledger
from fluxion_etl.store.db import create_db_engine

run_app = typer.Typer(
    help="Run a job now and wait for it (exit 0 succeeded, 1 partial/failed, 2 bad input)."
)
runs_app = typer.Typer(help="The run ledger.")
locations_app = typer.Typer(help="The configured locations.")

LocationOpt = Annotated[
    list[str] | None, typer.Option("--location", "-l", help="A location id; repeat for several.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(run_app, name="run")
    app.add_typer(runs_app, name="runs")
    app.add_typer(locations_app, name="locations")


@run_app.command("inventory")
def run_inventory(
    location: LocationOpt = None,
    full: Annotated[
        bool,
        typer.Option(
            help="Decode and merge every catalogue, also those unchanged since they were loaded."
        ),
    ] = False,
) -> None:
    """Sync the whole catalogue of every configured warehouse."""
    _run_and_report(Job.INVENTORY, Trigger.CLI, location, params={"full": True} if full else {})


@run_app.command("sales")
def run_sales(
    location: LocationOpt = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First local day, YYYY-MM-DD.")
    ] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last local day, inclusive.")] = None,
) -> None:
    """Sync sales since each location's watermark, or backfill whole local days --from/--to
    (--to defaults to today, as the API's fecha_fin does)."""
    start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    if end is not None and start is None:
        raise BadInputError("--from", "required when --to is given (YYYY-MM-DD)")
    trigger = Trigger.BACKFILL if start or end else Trigger.CLI
    _run_and_report(
        Job.SALES, trigger, location, date_from=start, date_to=end, to_today=start is not None
    )


@run_app.command("reconcile")
def run_reconcile(
    location: LocationOpt = None,
    days: Annotated[int, typer.Option(min=1, max=31, help="How many previous local days.")] = 2,
    allow_mass_deletion: Annotated[
        bool, typer.Option(help="Apply a deletion above the threshold (after checking KLK).")
    ] = False,
) -> None:
    """Re-read whole previous days; remove lines KLK no longer returns (voids)."""
    params: dict[str, Any] = {"days": days, "allow_mass_deletion": allow_mass_deletion}
    _run_and_report(Job.RECONCILE, Trigger.RECONCILE, location, params=params)


def _run_and_report(
    job: Job,
    trigger: Trigger,
    location: list[str] | None,
    *,
    to_today: bool = False,
    **kwargs: Any,
) -> None:
    with open_runtime() as rt:
        if to_today and kwargs.get("date_to") is None:
            first = (
                rt.config.location(location[0])
                if location and rt.config.knows(location[0])
                else None
            )
            zone = (first or rt.config.locations[0]).zone
            kwargs["date_to"] = local_date(rt.clock.now(), zone)
        _reap(rt)
        request = RunRequest(
            job=job,
            trigger=trigger,
            locations=tuple(location) if location else None,
            requested_by=f"cli:{_user()}",
            **kwargs,
        )
        result = submit(rt.engine, request, config=rt.config, settings=rt.settings, clock=rt.clock)
        scope = locations_for(rt, job, list(request.locations) if request.locations else None)
        with _interruptible(rt, result.run_id):
            status = _execute_with_progress(rt, result.run_id, len(scope))
        _print_run(rt, result.run_id)
    raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)


@contextmanager
def _interruptible(rt: Runtime, run_id: int) -> Iterator[None]:
    """Ctrl-C or SIGTERM: start no more locations, let those loading finish (each commits whole
    or not at all) and end the run with the rest left for the next one. A second one aborts: the
    run is marked abandoned (its unfinished locations failed, their leases freed) rather than left
    ``running`` until its lease expires, and the process ends at once, its loads' transactions
    rolled back with it (no thread loads on without its lease)."""
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        if stopping.is_set():
            _abort(rt, run_id)
        stopping.set()
        typer.echo(
            f"run {run_id}: stopping; the locations loading finish, the others are left for the "
            "next run (again to abort now)",
            err=True,
        )

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    rt.stop_requested = stopping.is_set
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _abort(rt: Runtime, run_id: int) -> None:
    """Mark the run abandoned through a connection of its own and end the process now: the
    locations' threads die with their open transactions (the database rolls them back)."""
    try:
        engine = create_db_engine(rt.settings.database_url, pool_size=1)
        with engine.begin() as conn:
            leases.abandon_run(
                conn, run_id, now=rt.clock.now(), message="interrupted from the command line"
            )
        typer.echo(f"run {run_id}: abandoned (interrupted)", err=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def _reap(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        leases.reap_expired(
            conn, now=rt.clock.now(), ttl=timedelta(seconds=rt.settings.lease_ttl_seconds)
        )


def _execute_with_progress(rt: Runtime, run_id: int, total: int) -> RunStatus:
    typer.echo(f"run {run_id}: {total} location(s)")
    if not is_terminal() or total <= 1:
        rt.on_progress = _plain_progress
        return execute_run(rt, run_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"run {run_id}", total=total)
        rt.on_progress = _bar_progress(progress, task)
        return execute_run(rt, run_id)


def _plain_progress(location_id: str, stage: str, detail: str) -> None:
    if stage == "done":
        typer.echo(f"  {location_id}: {detail}")


def _bar_progress(progress: Progress, task: Any) -> Callable[[str, str, str], None]:
    def update(location_id: str, stage: str, detail: str) -> None:
        if stage == "done":
            progress.advance(task)
        else:
            progress.update(task, description=f"{location_id} {stage} {detail}".strip())

    return update


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _print_run(rt: Runtime, run_id: int) -> None:
    with rt.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        items = ledger.get_items(conn, run_id)
    assert run is not None
    table = Table(title=f"run {run.id} {run.job}: {run.status}", title_justify="left")
    for col in (
        "location",
        "status",
        "fetched",
        "ins",
        "upd",
        "same",
        "del",
        "held",
        "ms",
        "error",
    ):
        table.add_column(col)
    for item in items:
        error = f"{item.error_category or ''} {item.error_message or ''}".strip()
        total_ms = item.extract_ms + item.transform_ms + item.load_ms
        table.add_row(
            item.location_id,
            item.status,
            str(item.fetched),
            str(item.inserted),
            str(item.updated),
            str(item.unchanged),
            str(item.deleted),
            str(item.held),
            str(total_ms),
            error[:80],
        )
    Console(width=None if is_terminal() else 200).print(table)
    if run.error_message:
        typer.echo(run.error_message)


@runs_app.command("list")
def runs_list(
    job: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    location: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent runs, newest first."""
    if job is not None and job not in {j.value for j in Job}:
        raise BadInputError("--job", f"{job!r}: use one of {', '.join(j.value for j in Job)}")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise BadInputError(
            "--status", f"{status!r}: use one of {', '.join(s.value for s in RunStatus)}"
        )
    with open_runtime() as rt, rt.engine.connect() as conn:
        ledger.check_location_filter(conn, rt.config, location, "--location")
        rows = ledger.list_runs(conn, job=job, status=status, location_id=location, limit=limit)
    if as_json:
        print_json([_run_dict(r) for r in rows])
        return
    # Shown in the chain's zone (its first location's, as the control centre does); --json
    # keeps UTC instants.
    zone = rt.config.locations[0].zone if rt.config.locations else UTC
    table = Table(title=f"times in {zone}", title_justify="left")
    for col in ("id", "job", "status", "trigger", "by", "created", "finished", "message"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.id),
            r.job,
            r.status,
            r.trigger,
            r.requested_by or "",
            _local(r.created_at, zone),
            _local(r.finished_at, zone),
            (r.error_message or "")[:60],
        )
    Console(width=None if is_terminal() else 200).print(table)


def _local(instant: datetime | None, zone: tzinfo) -> str:
    return "" if instant is None else instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %z")


@runs_app.command("show")
def runs_show(run_id: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run: its locations, counters, phase timings and errors."""
    with open_runtime() as rt:
        with rt.engine.connect() as conn:
            run = ledger.get_run(conn, run_id)
            items = ledger.get_items(conn, run_id)
        if run is None:
            raise BadInputError("RUN_ID", f"no run {run_id}")
        if as_json:
            print_json({**_run_dict(run), "items": [_item_dict(i) for i in items]})
            return
        _print_run(rt, run_id)


def _run_dict(run: ledger.RunRow) -> dict[str, Any]:
    return {k: getattr(run, k) for k in run.__dataclass_fields__}


def _item_dict(item: ledger.ItemRow) -> dict[str, Any]:
    return {k: getattr(item, k) for k in item.__dataclass_fields__}


@locations_app.command("list")
def locations_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The locations of the configuration file."""
    from fluxion_etl.cli.common import settings_and_config

    _, config = settings_and_config()
    if as_json:
        print_json(
            [
                {
                    "id": loc.id,
                    "name": loc.name,
                    "kind": loc.kind.value,
                    "branch": loc.branch_code,
                    "warehouses": [{"code": w.code, "role": w.role.value} for w in loc.warehouses],
                    "timezone": loc.timezone,
                    "active": loc.active,
                    "region": loc.region,
                }
                for loc in config.locations
            ]
        )
        return
    table = Table(title=config.source, title_justify="left")
    for col in ("id", "name", "kind", "branch", "warehouses", "timezone", "active"):
        table.add_column(col)
    for loc in config.locations:
        warehouses = ", ".join(f"{w.code} ({w.role.value})" for w in loc.warehouses)
        table.add_row(
            loc.id,
            loc.name,
            loc.kind.value,
            loc.branch_code or "-",
            warehouses,
            loc.timezone,
            "yes" if loc.active else "no",
        )
    print_table(table)


@locations_app.command("check")
def locations_check() -> None:
    """Compare the configuration with KLK's warehouse lists (exit 1 on any mismatch)."""
    from fluxion_etl.engine.check import check_locations

    with open_runtime(check_schema=False) as rt:
        problems = check_locations(rt.config, rt.klk)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(rt.config.locations)} locations match KLK's warehouse lists")
