"""Persisted schedules and the record of their fires (SPEC §4.2, §4.11).

Schedules: the configuration file seeds them (the defaults ``inventory``, ``sales`` and
``sales-reconcile`` fill in what it does not name); run-time changes through the API or CLI are
stored here and win. A row follows a changed configuration file only while nobody changed it at
run time (``updated_by`` is still ``config``); otherwise the database keeps its value and the seed
report names the schedule under ``kept``.

Fires: one row per (schedule, scheduled UTC time), the primary key, whatever delivered it. The
insert is ``ON CONFLICT DO NOTHING``, so of several deliveries of one fire (two ``serve``
processes, EventBridge's at-least-once) exactly one is recorded and the others are answered
``duplicate`` with the first one's outcome and run.

Every function takes an open ``Connection`` (the caller owns the transaction) and ``now`` from the
caller's clock. The HTTP API and the CLI call these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, select, update

from fluxion_etl.config import ChainConfig, ScheduleModel
from fluxion_etl.domain.schedules import (
    ActiveHours,
    FireSource,
    ScheduleDef,
    SchedulerMode,
    changed_fields,
    check_change,
    with_defaults,
)
from fluxion_etl.domain.states import FireOutcome, Job
from fluxion_etl.errors import UnknownScheduleError
from fluxion_etl.store import audit
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.schema import fires, schedules

SEED_ACTOR = "config"


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    definition: ScheduleDef
    seed_hash: str | None
    updated_by: str | None
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def changed_at_run_time(self) -> bool:
        return self.updated_by != SEED_ACTOR


@dataclass(frozen=True, slots=True)
class SeedReport:
    inserted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()  # followed a changed configuration file
    kept: tuple[str, ...] = ()  # the file changed, but a run-time change wins
    unchanged: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FireRow:
    schedule_name: str
    scheduled_for: datetime
    outcome: FireOutcome
    run_id: int | None
    source: FireSource
    recorded_at: datetime
    detail: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> FireRow:
        values = dict(row)
        values["outcome"], values["source"] = FireOutcome(row["outcome"]), FireSource(row["source"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RecordedFire:
    """The answer to one delivery of a fire.

    ``outcome`` is this delivery's answer: the outcome it asked to record, or ``duplicate`` when
    the fire was already recorded; ``first`` is the recorded row (its outcome and run).
    """

    outcome: FireOutcome
    existing: bool
    first: FireRow

    @property
    def run_id(self) -> int | None:
        return self.first.run_id


# --- schedules ---------------------------------------------------------------------------------


def definition_from_model(model: ScheduleModel) -> ScheduleDef:
    active = model.active_hours
    return ScheduleDef(
        name=model.name,
        job=Job(model.job),
        cron=model.cron,
        timezone=model.timezone,
        enabled=model.enabled,
        locations=None if model.locations is None else tuple(model.locations),
        active_hours=None
        if active is None
        else ActiveHours(active.start, active.end, tuple(active.weekdays)),
        retry_attempts=model.retry_attempts,
        max_event_age_seconds=model.max_event_age_seconds,
        catch_up=model.catch_up,
    )


def definitions_from_config(config: ChainConfig) -> tuple[ScheduleDef, ...]:
    """The configuration file's schedules, with the defaults for the names it leaves out."""
    return with_defaults(tuple(definition_from_model(m) for m in config.schedules))


def seed_schedules(conn: Connection, defs: tuple[ScheduleDef, ...], now: datetime) -> SeedReport:
    """Insert new definitions; follow changed ones unless changed at run time (module docstring).

    Safe when several processes seed at once: the insert ignores an existing row and the update
    is conditional on the row still being the configuration's.
    """
    report: dict[str, list[str]] = {"inserted": [], "updated": [], "kept": [], "unchanged": []}
    for definition in defs:
        report[_seed_one(conn, definition, now)].append(definition.name)
    return SeedReport(**{key: tuple(names) for key, names in report.items()})


def _seed_one(conn: Connection, definition: ScheduleDef, now: datetime) -> str:
    digest = definition.seed_hash()
    values = {**_row_values(definition), "seed_hash": digest, "updated_by": SEED_ACTOR}
    stmt = (
        insert_for(conn, schedules)
        .values(**values, updated_at=now)
        .on_conflict_do_nothing(index_elements=[schedules.c.name])
        .returning(schedules.c.name)
    )
    if conn.execute(stmt).scalar_one_or_none() is not None:
        return "inserted"
    followed = conn.execute(
        update(schedules)
        .where(
            schedules.c.name == definition.name,
            schedules.c.updated_by == SEED_ACTOR,
            schedules.c.seed_hash.is_distinct_from(digest),
        )
        .values(**values, updated_at=now)
    )
    if followed.rowcount == 1:
        return "updated"
    stored = get_schedule(conn, definition.name)
    return "unchanged" if stored is None or stored.seed_hash == digest else "kept"


def _row_values(definition: ScheduleDef) -> dict[str, Any]:
    data = definition.to_json()
    return {key: data[key] for key in data}


def _from_row(row: RowMapping) -> StoredSchedule:
    definition = ScheduleDef(
        name=row["name"],
        job=Job(row["job"]),
        cron=row["cron"],
        timezone=row["timezone"],
        enabled=row["enabled"],
        locations=None if row["locations"] is None else tuple(row["locations"]),
        active_hours=None
        if row["active_hours"] is None
        else ActiveHours.from_json(row["active_hours"]),
        retry_attempts=row["retry_attempts"],
        max_event_age_seconds=row["max_event_age_seconds"],
        catch_up=row["catch_up"],
    )
    return StoredSchedule(definition, row["seed_hash"], row["updated_by"], row["updated_at"])


def list_schedules(conn: Connection) -> list[StoredSchedule]:
    """Every schedule, by name."""
    rows = conn.execute(select(schedules).order_by(schedules.c.name)).mappings()
    return [_from_row(row) for row in rows]


def get_schedule(conn: Connection, name: str) -> StoredSchedule | None:
    row = conn.execute(select(schedules).where(schedules.c.name == name)).mappings().first()
    return None if row is None else _from_row(row)


def require_schedule(conn: Connection, name: str) -> StoredSchedule:
    """The schedule, or UnknownScheduleError naming the known ones (HTTP 404, exit 2)."""
    stored = get_schedule(conn, name)
    if stored is None:
        known = tuple(conn.execute(select(schedules.c.name).order_by(schedules.c.name)).scalars())
        raise UnknownScheduleError(name, known)
    return stored


def update_schedule(
    conn: Connection,
    name: str,
    *,
    enabled: bool | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    active_hours: ActiveHours | None = None,
    clear_active_hours: bool = False,
    by: str,
    now: datetime,
    mode: SchedulerMode = "embedded",
) -> StoredSchedule:
    """Change a schedule at run time; the change wins over the configuration file from now on.

    ``None`` leaves a field as it is; ``clear_active_hours`` removes the active-hours limit.
    Raises CronError (invalid cron or zone), UnknownScheduleError, and, with
    ``mode="external"``, ScheduleChangeRefusedError for a cron or zone change (EventBridge holds
    them; the message names the redeploy command). A change is written to the audit trail in the
    same transaction. The embedded scheduler reads schedules on every tick, so a change applies
    at once, without a restart.
    """
    stored = require_schedule(conn, name)
    old = stored.definition
    new = _changed(
        old,
        enabled=enabled,
        cron=cron,
        timezone=timezone,
        active_hours=active_hours,
        clear_active_hours=clear_active_hours,
    )
    check_change(old, new, mode)
    fields = changed_fields(old, new)
    if not fields:
        return stored
    conn.execute(
        update(schedules)
        .where(schedules.c.name == name)
        .values(**_row_values(new), updated_by=by, updated_at=now)
    )
    before, after = old.to_json(), new.to_json()
    audit.record(
        conn,
        actor=by,
        action="schedule.update",
        now=now,
        target=name,
        detail={field: {"from": before[field], "to": after[field]} for field in fields},
    )
    return StoredSchedule(new, stored.seed_hash, by, now)


def _changed(
    old: ScheduleDef,
    *,
    enabled: bool | None,
    cron: str | None,
    timezone: str | None,
    active_hours: ActiveHours | None,
    clear_active_hours: bool,
) -> ScheduleDef:
    values: dict[str, Any] = {
        key: value
        for key, value in (
            ("enabled", enabled),
            ("cron", cron),
            ("timezone", timezone),
            ("active_hours", active_hours),
        )
        if value is not None
    }
    if clear_active_hours:
        values["active_hours"] = None
    return replace(old, **values)  # ScheduleDef validates cron and zone


# --- fires -------------------------------------------------------------------------------------


def record_fire(
    conn: Connection,
    *,
    schedule_name: str,
    scheduled_for: datetime,
    outcome: FireOutcome,
    run_id: int | None,
    source: FireSource,
    now: datetime,
    detail: str | None = None,
) -> RecordedFire:
    """Record one fire's outcome, atomically once; a repeat is a no-op answered ``duplicate``."""
    values = {
        "schedule_name": schedule_name,
        "scheduled_for": scheduled_for,
        "outcome": outcome.value,
        "run_id": run_id,
        "source": source.value,
        "recorded_at": now,
        "detail": detail,
    }
    stmt = (
        insert_for(conn, fires)
        .values(values)
        .on_conflict_do_nothing(index_elements=[fires.c.schedule_name, fires.c.scheduled_for])
        .returning(fires.c.schedule_name)
    )
    created = conn.execute(stmt).scalar_one_or_none() is not None
    first = get_fire(conn, schedule_name, scheduled_for)
    assert first is not None  # just inserted, or inserted before
    return RecordedFire(outcome if created else FireOutcome.DUPLICATE, not created, first)


def get_fire(conn: Connection, schedule_name: str, scheduled_for: datetime) -> FireRow | None:
    row = (
        conn.execute(
            select(fires).where(
                fires.c.schedule_name == schedule_name, fires.c.scheduled_for == scheduled_for
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else FireRow.from_row(row)


def list_fires(
    conn: Connection,
    *,
    schedule_name: str | None = None,
    outcome: FireOutcome | None = None,
    since: datetime | None = None,
    include_manual: bool = True,
    limit: int = 100,
) -> list[FireRow]:
    """Recorded fires, newest scheduled time first; ``since`` filters on the scheduled time."""
    query = select(fires).order_by(fires.c.scheduled_for.desc(), fires.c.schedule_name).limit(limit)
    if schedule_name is not None:
        query = query.where(fires.c.schedule_name == schedule_name)
    if outcome is not None:
        query = query.where(fires.c.outcome == outcome.value)
    if since is not None:
        query = query.where(fires.c.scheduled_for >= since)
    if not include_manual:
        query = query.where(fires.c.source != FireSource.MANUAL.value)
    return [FireRow.from_row(row) for row in conn.execute(query).mappings()]


def last_fire(conn: Connection, schedule_name: str) -> FireRow | None:
    """The schedule's latest recorded scheduled fire: where its scheduler resumes after a restart.

    Manual triggers do not count: one at 10:17 must not hide the fires missed before it.
    """
    found = list_fires(conn, schedule_name=schedule_name, include_manual=False, limit=1)
    return found[0] if found else None
