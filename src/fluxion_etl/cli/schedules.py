"""``schedules`` (list, show, enable, disable, set, next, trigger, fire, check), ``fires list`` and
``export crontab|eventbridge``.

Every command first seeds the schedules from the configuration file (idempotent; run-time changes
win), so a fresh database shows the defaults. Changes go through the same store functions as the
API, with ``cli:<user>`` in the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from fluxion_etl.cli import schedule_exports
from fluxion_etl.cli.common import open_runtime, print_json
from fluxion_etl.cli.schedule_support import (
    JsonOpt,
    aware,
    cli_user,
    fire_dict,
    local_time,
    next_text,
    open_database,
    print_fires,
    print_table,
    schedule_dict,
)
from fluxion_etl.config import ChainConfig
from fluxion_etl.domain import cron
from fluxion_etl.domain.schedule_hours import schedule_warnings
from fluxion_etl.domain.schedules import (
    WEEKDAYS,
    ActiveHours,
    FireSource,
    ScheduleDef,
    fire_time_problem,
    manual_request,
    upcoming_fires,
)
from fluxion_etl.domain.states import FireOutcome, RunStatus
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.errors import BadInputError
from fluxion_etl.store.schedules import (
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
WaitOpt = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Run it now and wait (default), or leave it queued."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")
    app.add_typer(fires_app, name="fires")
    schedule_exports.register(app)


# --- reading ------------------------------------------------------------------------------------


@schedules_app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    """Every schedule, its next fire (in its zone) and who changed it; warns about open hours."""
    with open_database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        now = db.clock.now()
    if as_json:
        print_json([schedule_dict(s, now) for s in stored])
        return
    print_table(
        ("name", "job", "cron", "zone", "enabled", "active hours", "scope", "next", "changed by"),
        [
            (
                s.name,
                s.definition.job.value,
                s.definition.cron,
                s.definition.timezone,
                "yes" if s.definition.enabled else "no",
                s.definition.active_hours.describe() if s.definition.active_hours else "-",
                ",".join(s.definition.locations) if s.definition.locations else "all",
                next_text(s.definition, now),
                s.updated_by or "",
            )
            for s in stored
        ],
    )
    for warning in _warnings(stored, db.config, now):
        typer.echo(f"warning: {warning}", err=True)


@schedules_app.command("show")
def schedules_show(name: NameArg, as_json: JsonOpt = False) -> None:
    """One schedule: its definition, the next five fire times and its latest fires."""
    with open_database() as db, db.engine.connect() as conn:
        stored = require_schedule(conn, name)
        fires = list_fires(conn, schedule_name=name, limit=10)
        now = db.clock.now()
    d = stored.definition
    data = {
        **schedule_dict(stored, now),
        "recent_fires": [fire_dict(f, d.timezone) for f in fires],
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
        typer.echo(f"{'':>24}{local_time(instant, d.timezone)}")
    print_fires(fires, {name: d.timezone})


@schedules_app.command("next")
def schedules_next(
    name: NameArg,
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=1000)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The coming fire times, in the schedule's zone (inside its active hours only)."""
    with open_database() as db, db.engine.connect() as conn:
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
        typer.echo(local_time(instant, d.timezone))


@schedules_app.command("check")
def schedules_check() -> None:
    """Check the schedules against the locations' opening hours (exit 1 when open hours are left
    unsynced for longer than two schedule periods)."""
    with open_database() as db, db.engine.connect() as conn:
        stored = list_schedules(conn)
        now = db.clock.now()
    warnings = _warnings(stored, db.config, now)
    for warning in warnings:
        typer.echo(f"warning: {warning}")
    if warnings:
        raise typer.Exit(1)
    typer.echo(f"{len(stored)} schedules cover the opening hours of every location in scope")


def _warnings(stored: list[StoredSchedule], config: ChainConfig, now: datetime) -> list[str]:
    """A disabled schedule syncs nothing: it is a warning of its own, its hours are not judged."""
    week = now.date()
    disabled = [
        f"schedule {s.definition.name} ({s.definition.job.value}) is disabled: nothing it "
        f"covers is synced until `fluxion-etl schedules enable {s.definition.name}`"
        for s in stored
        if not s.definition.enabled
    ]
    return disabled + [
        w
        for s in stored
        if s.definition.enabled
        for w in schedule_warnings(s.definition, config.locations, week_of=week)
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
    with open_database() as db, db.engine.begin() as conn:
        before = require_schedule(conn, name)
        after = update_schedule(
            conn, name, **change, by=cli_user(), now=db.clock.now(), mode=db.settings.scheduler
        )
    if after == before:
        typer.echo(f"{name}: unchanged")
        return
    d = after.definition
    typer.echo(
        f"{name}: {'enabled' if d.enabled else 'disabled'}, {d.cron} ({d.timezone})"
        + (f", active {d.active_hours.describe()}" if d.active_hours else "")
        + f"; next: {next_text(d, db.clock.now())}"
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
        by = cli_user()
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
        when = local_time(scheduled_for, schedule.timezone)
        typer.echo(f"{name} at {when}: {answer.outcome.value}{run}{detail}")
        if wait and created:
            status = execute_run(rt, created[0])
            typer.echo(f"run {created[0]}: {status.value}")
            raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)


def _fire_time(schedule: ScheduleDef, at: str | None, now: datetime) -> datetime:
    if at is None:
        return cron.previous_fire(schedule.cron, schedule.timezone, now)
    scheduled_for = aware(at, "--at")
    problem = fire_time_problem(schedule, scheduled_for, now)
    if problem is not None:
        raise BadInputError("--at", problem)
    return scheduled_for


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
    start = None if since is None else aware(since, "--since")
    with open_database() as db, db.engine.connect() as conn:
        if schedule is not None:
            require_schedule(conn, schedule)  # a mistyped name would list nothing
        zones = {s.name: s.definition.timezone for s in list_schedules(conn)}
        found = list_fires(conn, schedule_name=schedule, outcome=wanted, since=start, limit=limit)
    if as_json:
        print_json([fire_dict(f, zones.get(f.schedule_name, "UTC")) for f in found])
        return
    print_fires(found, zones)


def _outcome(value: str | None) -> FireOutcome | None:
    if value is None:
        return None
    try:
        return FireOutcome(value)
    except ValueError:
        raise BadInputError(
            "--outcome", f"{value!r}: use one of {', '.join(FireOutcome)}"
        ) from None
