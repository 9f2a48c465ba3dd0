"""What the schedule, fire and export commands share: the database with schedules seeded, the
operator's name, local times, and the shapes printed as tables or JSON."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from fluxion_etl.cli.common import clock_from_env, is_terminal, settings_and_config
from fluxion_etl.config import ChainConfig
from fluxion_etl.domain import cron
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.schedules import ScheduleDef, upcoming_fires
from fluxion_etl.errors import BadInputError
from fluxion_etl.settings import Settings
from fluxion_etl.store.schedules import (
    FireRow,
    StoredSchedule,
    definitions_from_config,
    seed_schedules,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@dataclass
class Database:
    settings: Settings
    config: ChainConfig
    engine: Engine
    clock: Clock


@contextmanager
def open_database() -> Iterator[Database]:
    """Settings, configuration and database for one command, schedules seeded (idempotent; a
    fresh database shows the defaults); closed afterwards."""
    from fluxion_etl.store.db import check_schema, create_db_engine

    settings, config = settings_and_config()
    engine = create_db_engine(settings.database_url)
    try:
        check_schema(engine)
        clock = clock_from_env()
        with engine.begin() as conn:
            seed_schedules(conn, definitions_from_config(config), clock.now())
        yield Database(settings, config, engine, clock)
    finally:
        engine.dispose()


def cli_user() -> str:
    """Who made a change, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def local_time(instant: datetime, zone: str) -> str:
    return instant.astimezone(cron.zone(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


def aware(value: str, flag: str) -> datetime:
    """An ISO 8601 time with an offset (a flag's value)."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadInputError(
            flag, f"{value!r}: use ISO 8601 with an offset, e.g. 2026-01-05T10:00-04:00"
        )
    return when


def print_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=None if is_terminal() else 200).print(table)


def next_text(d: ScheduleDef, now: datetime) -> str:
    times = upcoming_fires(d, now, 1)
    if not times:
        return "never"
    return ("(off) " if not d.enabled else "") + local_time(times[0], d.timezone)


def schedule_dict(stored: StoredSchedule, now: datetime) -> dict[str, Any]:
    d = stored.definition
    zone = cron.zone(d.timezone)
    return {
        **d.to_json(),
        "updated_by": stored.updated_by,
        "updated_at": stored.updated_at,
        "changed_at_run_time": stored.changed_at_run_time,
        "next_fires": [t.astimezone(zone).isoformat() for t in upcoming_fires(d, now, 5)],
    }


def fire_dict(f: FireRow, zone: str) -> dict[str, Any]:
    return {
        "schedule": f.schedule_name,
        "scheduled_for": f.scheduled_for.astimezone(cron.zone(zone)),
        "outcome": f.outcome.value,
        "run_id": f.run_id,
        "source": f.source.value,
        "recorded_at": f.recorded_at,
        "detail": f.detail,
    }


def print_fires(fires: list[FireRow], zones: dict[str, str]) -> None:
    print_table(
        ("schedule", "scheduled for", "outcome", "run", "source", "detail"),
        [
            (
                f.schedule_name,
                local_time(f.scheduled_for, zones.get(f.schedule_name, "UTC")),
                f.outcome.value,
                str(f.run_id or ""),
                f.source.value,
                (f.detail or "")[:80],
            )
            for f in fires
        ],
    )
