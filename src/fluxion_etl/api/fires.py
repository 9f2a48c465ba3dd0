"""Scheduler fires delivered through the API (EventBridge → Lambda → ``POST /api/etl/sync…`` with
``X-Fluxion-Schedule`` and ``X-Fluxion-Scheduled-Time``): the schedule a fire belongs to, the fire
already recorded, and recording a fire's outcome (SPEC §4.2, §4.11, §6).

The schedule is read from the database (run-time changes win); a schedule not seeded yet falls
back to the configuration file and its defaults, so a fire is never refused only because the
service has not seeded its schedules.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import status as http

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.trigger import ScheduledFire, TriggerOutcome
from fluxion_etl.domain.schedules import FireSource, ScheduleDef
from fluxion_etl.domain.states import FireOutcome
from fluxion_etl.errors import BadInputError
from fluxion_etl.store import ledger
from fluxion_etl.store import schedules as stored_schedules
from fluxion_etl.store.schedules import FireRow, RecordedFire

SCHEDULE_HEADER = "X-Fluxion-Schedule"


def schedule_for(services: ServiceContext, name: str) -> ScheduleDef:
    with services.read_engine.connect() as conn:
        stored = stored_schedules.get_schedule(conn, name)
    if stored is not None:
        return stored.definition
    configured = {d.name: d for d in stored_schedules.definitions_from_config(services.config)}
    if name in configured:
        return configured[name]
    raise BadInputError(
        SCHEDULE_HEADER, f"no schedule {name!r}; known: {', '.join(sorted(configured))}"
    )


def earlier_delivery(services: ServiceContext, fire: ScheduledFire) -> TriggerOutcome | None:
    """The answer ``duplicate`` when this fire was already recorded, else None."""
    with services.read_engine.connect() as conn:
        first = stored_schedules.get_fire(conn, fire.schedule_name, fire.scheduled_for)
    return None if first is None else duplicate(services, fire, first)


def duplicate(services: ServiceContext, fire: ScheduledFire, first: FireRow) -> TriggerOutcome:
    run = None
    if first.run_id is not None:
        with services.read_engine.connect() as conn:
            run = ledger.get_run(conn, first.run_id)
    started = f"run {first.run_id}" if first.run_id is not None else "no run"
    return TriggerOutcome(
        http_status=http.HTTP_200_OK,
        success=True,
        status=FireOutcome.DUPLICATE.value,
        message=f"fire {fire.schedule_name} at {_utc(fire.scheduled_for)} was already answered "
        f"{first.outcome.value} ({started})",
        run_id=first.run_id,
        run_status=None if run is None else run.status,
        fire_outcome=FireOutcome.DUPLICATE,
    )


def record(
    services: ServiceContext,
    fire: ScheduledFire,
    outcome: FireOutcome,
    *,
    run_id: int | None = None,
    detail: str | None = None,
) -> RecordedFire:
    with services.engine.begin() as conn:
        return stored_schedules.record_fire(
            conn,
            schedule_name=fire.schedule_name,
            scheduled_for=fire.scheduled_for,
            outcome=outcome,
            run_id=run_id,
            source=FireSource.EXTERNAL,
            now=services.clock.now(),
            detail=detail,
        )


def not_started_detail(
    outcome: FireOutcome, schedule: ScheduleDef, fire: ScheduledFire, now: datetime
) -> str:
    """Why a fire was not started, for the answer's ``message`` and the fire's record."""
    name = schedule.name
    if outcome is FireOutcome.SKIPPED_DISABLED:
        return f"schedule {name} is disabled: fire at {_utc(fire.scheduled_for)} not started"
    if outcome is FireOutcome.SKIPPED_INACTIVE_HOURS:
        hours = schedule.active_hours.describe() if schedule.active_hours else ""
        return (
            f"fire at {_utc(fire.scheduled_for)} is outside schedule {name}'s active hours "
            f"({hours} {schedule.timezone}): not started"
        )
    age = int((now - fire.scheduled_for).total_seconds())
    return (
        f"fire at {_utc(fire.scheduled_for)} is {age} s old, more than schedule {name}'s maximum "
        f"event age of {schedule.max_event_age_seconds} s: missed, not started"
    )


def _utc(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")
