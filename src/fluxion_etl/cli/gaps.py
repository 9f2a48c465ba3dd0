"""``gaps list|recover`` (sales gaps and their recovery) and ``alerts list|messages|test``.

``gaps recover`` runs the recovery runs in this process, one after the other, like ``run``:
exit 0 when every one succeeded (or there was nothing to recover), 1 otherwise.
"""

from __future__ import annotations

import getpass
import os
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fluxion_etl.cli.common import is_terminal, open_runtime, print_json
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.ops import gaps as ops_gaps
from fluxion_etl.ops.alerts import open_alerts, recent_alerts
from fluxion_etl.ops.recover import recover_gaps
from fluxion_etl.store import alerts as alert_store
from fluxion_etl.store import ledger

gaps_app = typer.Typer(help="Sales gaps: opening hours without synced sales, and their recovery.")
alerts_app = typer.Typer(help="Alerts: what is wrong now, what was sent, and a channel test.")

LocationOpt = Annotated[str | None, typer.Option("--location", "-l", help="A location id.")]
DaysOpt = Annotated[
    int,
    typer.Option(min=1, max=ops_gaps.MAX_DAYS, help="Local days back, today included."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    app.add_typer(gaps_app, name="gaps")
    app.add_typer(alerts_app, name="alerts")


def _console() -> Console:
    return Console(width=None if is_terminal() else 200)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@gaps_app.command("list")
def gaps_list(
    location: LocationOpt = None, days: DaysOpt = ops_gaps.DEFAULT_DAYS, as_json: AsJson = False
) -> None:
    """Opening hours of the last DAYS days without final sales coverage (provisional: read as
    zero lines while open). Exit 1 when there is any gap, so a monitor can run it."""
    with open_runtime() as rt, rt.engine.connect() as conn:
        found = ops_gaps.list_gaps(
            conn, rt.config, now=rt.clock.now(), days=days, location_id=location
        )
        zones = {loc.id: loc.zone for loc in rt.config.locations}
    if as_json:
        print_json([{**_gap_dict(g), "seconds": g.seconds} for g in found])
    else:
        table = Table()
        for col in ("location", "day", "from", "to", "hours", "kind"):
            table.add_column(col)
        for gap in found:
            zone = zones[gap.location_id]
            table.add_row(
                gap.location_id,
                gap.day.isoformat(),
                gap.start.astimezone(zone).strftime("%H:%M"),
                gap.end.astimezone(zone).strftime("%H:%M"),
                f"{gap.seconds / 3600:.1f}",
                "read empty" if gap.provisional else "missing",
            )
        _console().print(table)
        locations = len({g.location_id for g in found})
        typer.echo(f"{len(found)} gap(s) at {locations} location(s)" if found else "no gaps")
    if found:
        raise typer.Exit(1)


def _gap_dict(gap: ops_gaps.LocationGap) -> dict[str, Any]:
    return {k: getattr(gap, k) for k in gap.__dataclass_fields__}


@gaps_app.command("recover")
def gaps_recover(location: LocationOpt = None, days: DaysOpt = ops_gaps.DEFAULT_DAYS) -> None:
    """Re-read the days that have gaps (a sales backfill per location, trigger ``recovery``,
    tracked like any run), here and now."""
    with open_runtime() as rt:
        submitted = recover_gaps(
            rt.engine,
            config=rt.config,
            settings=rt.settings,
            clock=rt.clock,
            requested_by=_actor(),
            location_id=location,
            days=days,
        )
        if not submitted:
            typer.echo("no gaps to recover")
            return
        statuses = []
        for run in submitted:
            span = f"{run.date_from}..{run.date_to}"
            if not run.created:
                typer.echo(f"{run.location_id}: recovery run {run.run_id} is already running")
                continue
            typer.echo(f"{run.location_id}: run {run.run_id} re-reads {span}", nl=False)
            status = execute_run(rt, run.run_id)
            statuses.append(status)
            typer.echo(f": {status.value}{_error(rt.engine, run.run_id)}")
        with rt.engine.connect() as conn:
            left = ops_gaps.list_gaps(
                conn, rt.config, now=rt.clock.now(), days=days, location_id=location
            )
    typer.echo(f"{len(left)} gap(s) left" if left else "no gaps left")
    if any(status is not RunStatus.SUCCEEDED for status in statuses):
        raise typer.Exit(1)


def _error(engine: Any, run_id: int) -> str:
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    return f" ({run.error_message})" if run is not None and run.error_message else ""


@alerts_app.command("list")
def alerts_list(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also alerts cleared in the last 7 days.")
    ] = False,
    location: LocationOpt = None,
    as_json: AsJson = False,
) -> None:
    """Alerts open now (one per condition and location). Exit 1 when any is open."""
    with open_runtime() as rt, rt.engine.connect() as conn:
        ledger.check_location_filter(conn, rt.config, location, "--location")
        now = rt.clock.now()
        rows = (
            recent_alerts(conn, since=now - timedelta(days=7), location_id=location)
            if show_all
            else open_alerts(conn, location_id=location)
        )
        still_open = open_alerts(conn, location_id=location)
    if as_json:
        print_json([{k: getattr(r, k) for k in r.__dataclass_fields__} for r in rows])
    else:
        table = Table()
        for col in ("id", "kind", "job", "location", "opened", "cleared", "summary"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                str(r.id),
                r.kind,
                r.job or "",
                r.location_id or r.subject or "",
                r.opened_at.isoformat(timespec="minutes"),
                r.cleared_at.isoformat(timespec="minutes") if r.cleared_at else "",
                r.summary[:90],
            )
        _console().print(table)
        typer.echo(f"{len(still_open)} open alert(s)" if still_open else "no open alerts")
    if still_open:
        raise typer.Exit(1)


@alerts_app.command("messages")
def alerts_messages(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, as_json: AsJson = False
) -> None:
    """The messages sent (or tried), newest first, with what each channel answered."""
    with open_runtime() as rt, rt.engine.connect() as conn:
        rows = alert_store.list_messages(conn, limit=limit)
    if as_json:
        print_json([{k: getattr(r, k) for k in r.__dataclass_fields__} for r in rows])
        return
    table = Table()
    for col in ("sent", "kind", "subject", "channels"):
        table.add_column(col)
    for r in rows:
        channels = ", ".join(f"{name}: {why}" for name, why in (r.deliveries or {}).items())
        table.add_row(r.sent_at.isoformat(timespec="minutes"), r.kind, r.subject, channels)
    _console().print(table)


@alerts_app.command("test")
def alerts_test() -> None:
    """Send a test message through every configured channel (exit 1 when one fails)."""
    import httpx

    from fluxion_etl.ops.channels import Message, channels_from_config, deliver

    with open_runtime(check_schema=False) as rt, httpx.Client() as http:
        channels = channels_from_config(rt.config.alerts, env=os.environ, http=http)
        if not channels:
            typer.echo("no alert channels configured ([[alerts.channels]] in the configuration)")
            raise typer.Exit(1)
        message = Message(
            "test",
            "[fluxion-etl] test message",
            f"A test from `fluxion-etl alerts test` by {_actor()}: this channel works.",
            rt.clock.now(),
        )
        results = deliver(channels, message)
    for name, result in results.items():
        typer.echo(f"{name}: {result}")
    if any(result != "ok" for result in results.values()):
        raise typer.Exit(1)
