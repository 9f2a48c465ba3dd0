"""``export eventbridge`` and ``export crontab``: the schedules for an external scheduler, through
the one converter the AWS CDK app uses too (``fluxion_etl.domain.exports``)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from fluxion_etl.cli.common import print_json
from fluxion_etl.cli.schedule_support import JsonOpt, open_database, print_table
from fluxion_etl.domain import cron
from fluxion_etl.domain.exports import crontab, to_eventbridge
from fluxion_etl.errors import BadInputError
from fluxion_etl.store.schedules import list_schedules

export_app = typer.Typer(
    help="Export the schedules for an external scheduler (crontab, EventBridge)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")


@export_app.command("eventbridge")
def export_eventbridge(as_json: JsonOpt = False) -> None:
    """EventBridge Scheduler definitions (six-field cron, SUN = 1, time-zone field); an
    expression EventBridge cannot express is refused with the reason (exit 2)."""
    with open_database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        today = db.clock.now().date()
    exported = [to_eventbridge(s.definition, on=today) for s in stored]
    if as_json:
        print_json([e.to_json() for e in exported])
        return
    print_table(
        ("name", "expression", "timezone", "state", "retries", "max age s"),
        [
            (
                e.name,
                e.expression,
                e.timezone,
                e.state,
                str(e.retry_attempts),
                str(e.max_event_age_seconds),
            )
            for e in exported
        ],
    )
    for e in exported:
        for note in e.notes:
            typer.echo(f"note: {e.name}: {note}", err=True)


@export_app.command("crontab")
def export_crontab(
    machine_zone: Annotated[
        str | None,
        typer.Option("--machine-zone", help="The cron daemon's zone (default: this machine's)."),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option("--command", help="How cron calls the CLI (default: this executable)."),
    ] = None,
) -> None:
    """Crontab lines calling ``fluxion-etl schedules fire NAME``, in the machine's zone."""
    zone = machine_zone or _machine_zone()
    cron.zone(zone)
    with open_database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        today = db.clock.now().date()
    text = crontab([s.definition for s in stored], zone, command or _command(), on=today)
    typer.echo(text, nl=False)


def _machine_zone() -> str:
    """This machine's IANA zone: $TZ, else the /etc/localtime link, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for name in candidates:
        if name:
            try:
                return cron.zone(name).key
            except BadInputError:
                continue
    return "UTC"


def _command() -> str:
    """An absolute path when it can be found: cron runs with an almost empty PATH."""
    found = shutil.which("fluxion-etl")
    if found:
        return found
    argv0 = Path(sys.argv[0])
    return str(argv0.resolve()) if argv0.name == "fluxion-etl" else "fluxion-etl"
