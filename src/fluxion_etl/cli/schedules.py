"""``schedules`` (list, show, enable, disable, set, next, trigger, fire, check), ``fires list`` and
``export crontab|eventbridge``.

Every command first seeds the schedules from the configuration file (idempotent; run-time changes
win), so a fresh database shows the defaults. Changes go through the same store functions as the
API, with ``cli:<user>`` in the audit trail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from fluxion_etl.cli.common import is_terminal, open_runtime, print_json, settings_and_config
from fluxion_etl.config import ChainConfig
from fluxion_etl.domain import cron
from fluxion_etl.domain.clock import Clock, clock_from_spec
from fluxion_etl.domain.exports import crontab, to_eventbridge
from fluxion_etl.domain.schedule_hours import schedule_warnings
from fluxion_etl.domain.schedules import (
    WEEKDAYS,
    ActiveHours,
    FireSource,
    ScheduleDef,
    manual_request,
    upcoming_fires,
)
from fluxion_etl.domain.states import FireOutcome, RunStatus
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.errors import BadInputError
from fluxion_etl.settings import Settings
from fluxion_etl.store.schedules import (
    FireRow,
    StoredSchedule,
    definitions_from_config,
    list_fires,
    list_schedules,
    record_fire,
    require_schedule,
    seed_schedules,
    update_schedule,
)

schedules_app = typer.Typer(
    help="Schedules: see them, switch them off and on, change them, fire them."
)
fires_app = typer.Typer(help="The record of every schedule fire and its outcome.")
export_app = typer.Typer(
    help="Export the schedules for an external scheduler (crontab, EventBridge)."
)

NameArg = Annotated[str, typer.Argument(help="The schedule's name, e.g. inventory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
WaitOpt = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Run it now and wait (default), or leave it queued."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")
    app.add_typer(fires_app, name="fires")
    app.add_typer(export_app, name="export")


@dataclass
class _Db:
    settings: Settings
    config: ChainConfig
    engine: Engine
    clock: Clock


@contextmanager
def _database() -> Iterator[_Db]:
    """Settings, configuration and database for one command, schedules seeded; closed after."""
    from fluxion_etl.store.db import check_schema, create_db_engine

    settings, config = settings_and_config()
    engine = create_db_engine(settings.database_url)
    try:
        check_schema(engine)
        clock = clock_from_spec(os.environ.get("FLUXION_CLOCK"))
        with engine.begin() as conn:
            seed_schedules(conn, definitions_from_config(config), clock.now())
        yield _Db(settings, config, engine, clock)
    finally:
        engine.dispose()


def _user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _local(instant: datetime, zone: str) -> str:
    return instant.astimezone(cron.zone(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


# --- reading ------------------------------------------------------------------------------------


@schedules_app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    """Every schedule, its next fire (in its zone) and who changed it; warns about open hours."""
    with _database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        now = db.clock.now()
    if as_json:
        print_json([_schedule_dict(s, now) for s in stored])
        return
    table = Table()
    for col in (
        "name",
        "job",
        "cron",
        "zone",
        "enabled",
        "active hours",
        "scope",
        "next",
        "changed by",
    ):
        table.add_column(col)
    for s in stored:
        d = s.definition
        table.add_row(
            d.name,
            d.job.value,
            d.cron,
            d.timezone,
            "yes" if d.enabled else "no",
            d.active_hours.describe() if d.active_hours else "-",
            ",".join(d.locations) if d.locations else "all",
            _next_text(d, now),
            s.updated_by or "",
        )
    Console(width=None if is_terminal() else 200).print(table)
    for warning in _warnings(stored, db.config, now):
        typer.echo(f"warning: {warning}", err=True)


@schedules_app.command("show")
def schedules_show(name: NameArg, as_json: JsonOpt = False) -> None:
    """One schedule: its definition, the next five fire times and its latest fires."""
    with _database() as db, db.engine.connect() as conn:
        stored = require_schedule(conn, name)
        fires = list_fires(conn, schedule_name=name, limit=10)
        now = db.clock.now()
    d = stored.definition
    data = {
        **_schedule_dict(stored, now),
        "recent_fires": [_fire_dict(f, d.timezone) for f in fires],
    }
    if as_json:
        print_json(data)
        return
    for key in (
        "name",
        "job",
        "cron",
        "timezone",
        "enabled",
        "locations",
        "active_hours",
        "retry_attempts",
        "max_event_age_seconds",
        "catch_up",
        "updated_by",
        "updated_at",
    ):
        typer.echo(f"{key:>22}: {data[key]}")
    typer.echo(f"{'next':>22}: " + ("(disabled) " if not d.enabled else ""))
    for instant in upcoming_fires(d, now, 5):
        typer.echo(f"{'':>24}{_local(instant, d.timezone)}")
    _print_fires(fires, {name: d.timezone})


@schedules_app.command("next")
def schedules_next(
    name: NameArg,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=1000)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The coming fire times, in the schedule's zone (inside its active hours only)."""
    with _database() as db, db.engine.connect() as conn:
        d = require_schedule(conn, name).definition
        now = db.clock.now()
    times = upcoming_fires(d, now, count)
    if as_json:
        zone = cron.zone(d.timezone)
        print_json([t.astimezone(zone).isoformat() for t in times])
        return
    if not d.enabled:
        typer.echo(
            f"{name} is disabled: these times fire only after `fluxion-etl schedules enable {name}`"
        )
    for instant in times:
        typer.echo(_local(instant, d.timezone))


@schedules_app.command("check")
def schedules_check() -> None:
    """Check the schedules against the locations' opening hours (exit 1 when open hours are left
    unsynced for longer than two schedule periods)."""
    with _database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        now = db.clock.now()
    warnings = _warnings(stored, db.config, now)
    for warning in warnings:
        typer.echo(f"warning: {warning}")
    if warnings:
        raise typer.Exit(1)
    typer.echo(f"{len(stored)} schedules cover the opening hours of every location in scope")


def _warnings(stored: list[StoredSchedule], config: ChainConfig, now: datetime) -> list[str]:
    week = now.date()
    return [
        w for s in stored for w in schedule_warnings(s.definition, config.locations, week_of=week)
    ]


# --- changing -----------------------------------------------------------------------------------


@schedules_app.command("enable")
def schedules_enable(name: NameArg) -> None:
    """Switch a schedule on: it fires again from its next fire time (no catch-up)."""
    _change(name, enabled=True)


@schedules_app.command("disable")
def schedules_disable(name: NameArg) -> None:
    """Switch a schedule off, at once (its fires are recorded skipped_disabled)."""
    _change(name, enabled=False)


@schedules_app.command("set")
def schedules_set(
    name: NameArg,
    *,
    cron_expression: Annotated[
        str | None, typer.Option("--cron", help="Five-field cron, e.g. '0,30 * * * *'.")
    ] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone.")] = None,
    active_hours: Annotated[
        str | None, typer.Option("--active-hours", help="Local HH:MM-HH:MM, both ends included.")
    ] = None,
    weekdays: Annotated[
        str | None, typer.Option("--weekdays", help="With --active-hours: e.g. mon,tue,wed.")
    ] = None,
    no_active_hours: Annotated[
        bool, typer.Option("--no-active-hours", help="Remove the active-hours limit.")
    ] = False,
) -> None:
    """Change a schedule's cron, zone or active hours (the database wins over the config file)."""
    if active_hours and no_active_hours:
        raise BadInputError("--active-hours", "give --active-hours or --no-active-hours, not both")
    if weekdays and not active_hours:
        raise BadInputError("--weekdays", "goes with --active-hours")
    days = tuple(d.strip().lower() for d in weekdays.split(",")) if weekdays else WEEKDAYS
    hours = ActiveHours.parse(active_hours, days) if active_hours else None
    _change(
        name,
        cron=cron_expression,
        timezone=timezone,
        active_hours=hours,
        clear_active_hours=no_active_hours,
    )


def _change(name: str, **change: Any) -> None:
    with _database() as db, db.engine.begin() as conn:
        before = require_schedule(conn, name)
        after = update_schedule(
            conn, name, **change, by=_user(), now=db.clock.now(), mode=db.settings.scheduler
        )
    if after == before:
        typer.echo(f"{name}: unchanged")
        return
    d = after.definition
    typer.echo(
        f"{name}: {'enabled' if d.enabled else 'disabled'}, {d.cron} ({d.timezone})"
        + (f", active {d.active_hours.describe()}" if d.active_hours else "")
        + f"; next: {_next_text(d, db.clock.now())}"
    )


# --- firing -------------------------------------------------------------------------------------


@schedules_app.command("trigger")
def schedules_trigger(name: NameArg, wait: WaitOpt = True) -> None:
    """Run the schedule's job and scope now, by hand (trigger ``cli``; a manual fire)."""
    from fluxion_etl.engine.submit import submit

    with open_runtime() as rt:
        with rt.engine.begin() as conn:
            seed_schedules(conn, definitions_from_config(rt.config), rt.clock.now())
        with rt.engine.connect() as conn:
            schedule = require_schedule(conn, name).definition
        by = _user()
        request = manual_request(schedule, rt.clock.now(), by)
        result = submit(rt.engine, request, config=rt.config, settings=rt.settings, clock=rt.clock)
        assert request.scheduled_for is not None
        with rt.engine.begin() as conn:
            record_fire(
                conn,
                schedule_name=name,
                scheduled_for=request.scheduled_for,
                outcome=FireOutcome.STARTED,
                run_id=result.run_id,
                source=FireSource.MANUAL,
                now=rt.clock.now(),
                detail=f"triggered by {by}",
            )
        typer.echo(f"{name}: run {result.run_id} ({schedule.job.value}) queued")
        if wait:
            _execute(rt, result.run_id)


@schedules_app.command("fire")
def schedules_fire(
    name: NameArg,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="The scheduled time (ISO 8601 with offset); default: the "
            "schedule's latest fire time at or before now.",
        ),
    ] = None,
    wait: WaitOpt = True,
) -> None:
    """Deliver a scheduled fire, as the exported crontab does: the same decisions and record as
    the embedded scheduler; a repeated fire is a no-op."""
    from fluxion_etl.engine.runner import execute_run
    from fluxion_etl.scheduler.fires import deliver_fire, submitting_fire

    with open_runtime() as rt:
        with rt.engine.begin() as conn:
            seed_schedules(conn, definitions_from_config(rt.config), rt.clock.now())
            schedule = require_schedule(conn, name).definition
        scheduled_for = _fire_time(schedule, at, rt.clock.now())
        created: list[int] = []
        fire = submitting_fire(
            rt.engine,
            config=rt.config,
            settings=rt.settings,
            clock=rt.clock,
            on_created=created.append,
        )
        answer = deliver_fire(rt.engine, name, scheduled_for, clock=rt.clock, fire=fire)
        detail = f" ({answer.first.detail})" if answer.first.detail else ""
        run = f" run {answer.run_id}" if answer.run_id else ""
        when = _local(scheduled_for, schedule.timezone)
        typer.echo(f"{name} at {when}: {answer.outcome.value}{run}{detail}")
        if wait and created:
            status = execute_run(rt, created[0])
            typer.echo(f"run {created[0]}: {status.value}")
            raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)


def _fire_time(schedule: ScheduleDef, at: str | None, now: datetime) -> datetime:
    if at is None:
        return cron.previous_fire(schedule.cron, schedule.timezone, now)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadInputError(
            "--at", f"{at!r}: use ISO 8601 with an offset, e.g. 2026-01-05T10:00-04:00"
        )
    return when


def _execute(rt: Runtime, run_id: int) -> None:
    from fluxion_etl.engine.runner import execute_run

    status = execute_run(rt, run_id)
    typer.echo(f"run {run_id}: {status.value}")
    raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)


# --- fires --------------------------------------------------------------------------------------


@fires_app.command("list")
def fires_list(
    schedule: Annotated[str | None, typer.Option("--schedule", help="One schedule.")] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            help="started, duplicate, skipped_disabled, skipped_inactive_hours or missed.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Scheduled at or after (ISO 8601 with offset).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=5000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Recorded fires, newest first, with why a fire did not start (e.g. the missed ones)."""
    wanted = _outcome(outcome)
    start = _since(since)
    with _database() as db, db.engine.connect() as conn:
        zones = {s.name: s.definition.timezone for s in list_schedules(conn)}
        found = list_fires(conn, schedule_name=schedule, outcome=wanted, since=start, limit=limit)
    if as_json:
        print_json([_fire_dict(f, zones.get(f.schedule_name, "UTC")) for f in found])
        return
    _print_fires(found, zones)


def _outcome(value: str | None) -> FireOutcome | None:
    if value is None:
        return None
    try:
        return FireOutcome(value)
    except ValueError:
        raise BadInputError(
            "--outcome", f"{value!r}: use one of {', '.join(FireOutcome)}"
        ) from None


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadInputError("--since", f"{value!r}: use ISO 8601 with an offset")
    return when


def _print_fires(fires: list[FireRow], zones: dict[str, str]) -> None:
    table = Table()
    for col in ("schedule", "scheduled for", "outcome", "run", "source", "detail"):
        table.add_column(col)
    for f in fires:
        table.add_row(
            f.schedule_name,
            _local(f.scheduled_for, zones.get(f.schedule_name, "UTC")),
            f.outcome.value,
            str(f.run_id or ""),
            f.source.value,
            (f.detail or "")[:80],
        )
    Console(width=None if is_terminal() else 200).print(table)


# --- exports ------------------------------------------------------------------------------------


@export_app.command("eventbridge")
def export_eventbridge(as_json: JsonOpt = False) -> None:
    """EventBridge Scheduler definitions (six-field cron, SUN = 1, time-zone field); an
    expression EventBridge cannot express is refused with the reason (exit 2)."""
    with _database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        today = db.clock.now().date()
    exported = [to_eventbridge(s.definition, on=today) for s in stored]
    if as_json:
        print_json([e.to_json() for e in exported])
        return
    table = Table()
    for col in ("name", "expression", "timezone", "state", "retries", "max age s"):
        table.add_column(col)
    for e in exported:
        table.add_row(
            e.name,
            e.expression,
            e.timezone,
            e.state,
            str(e.retry_attempts),
            str(e.max_event_age_seconds),
        )
    Console(width=None if is_terminal() else 200).print(table)
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
        typer.Option(
            "--command", help="How cron calls the CLI (default: this executable's absolute path)."
        ),
    ] = None,
) -> None:
    """Crontab lines calling ``fluxion-etl schedules fire NAME``, in the machine's zone."""
    zone = machine_zone or _machine_zone()
    cron.zone(zone)
    with _database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        today: date = db.clock.now().date()
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
    found = shutil.which("fluxion-etl")
    if found:
        return found
    argv0 = Path(sys.argv[0])
    return str(argv0.resolve()) if argv0.name == "fluxion-etl" else "fluxion-etl"


# --- shaping ------------------------------------------------------------------------------------


def _next_text(d: ScheduleDef, now: datetime) -> str:
    times = upcoming_fires(d, now, 1)
    if not times:
        return "never"
    return ("(off) " if not d.enabled else "") + _local(times[0], d.timezone)


def _schedule_dict(stored: StoredSchedule, now: datetime) -> dict[str, Any]:
    d = stored.definition
    zone = cron.zone(d.timezone)
    return {
        **d.to_json(),
        "updated_by": stored.updated_by,
        "updated_at": stored.updated_at,
        "changed_at_run_time": stored.changed_at_run_time,
        "next_fires": [t.astimezone(zone).isoformat() for t in upcoming_fires(d, now, 5)],
    }


def _fire_dict(f: FireRow, zone: str) -> dict[str, Any]:
    return {
        "schedule": f.schedule_name,
        "scheduled_for": f.scheduled_for.astimezone(cron.zone(zone)),
        "outcome": f.outcome.value,
        "run_id": f.run_id,
        "source": f.source.value,
        "recorded_at": f.recorded_at,
        "detail": f.detail,
    }
