"""The one path of a fire: decide it, start it through the API's submission, record it.

    planned fire ──▶ already recorded? ──yes──▶ duplicate (the first outcome and run)
                         │ no
                         ▼
                 outcome decided? ──no──▶ fire(schedule, time) → run (idempotency key = the fire)
                         │ yes                    │
                         ▼                        ▼
                 record_fire(outcome)       record_fire(started, run)

The run is submitted before the fire is recorded: should the process die in between, the fire is
still due when the scheduler resumes, and submitting it again returns the same run (its key is
the fire), so a fire is never lost and never starts two runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.requests import SubmitResult
from fluxion_etl.domain.schedules import (
    FireSource,
    PlannedFire,
    ScheduleDef,
    decide_fire,
    fire_request,
    outcome_detail,
)
from fluxion_etl.domain.states import FireOutcome
from fluxion_etl.engine.submit import submit
from fluxion_etl.settings import Settings
from fluxion_etl.store.schedules import RecordedFire, get_fire, record_fire, require_schedule

FireResult = SubmitResult
FireCallback = Callable[[ScheduleDef, datetime], FireResult]
"""Submits the run of a started fire (``fire_request``) and returns the submission's answer."""


def handle_fire(
    engine: Engine,
    schedule: ScheduleDef,
    planned: PlannedFire,
    *,
    source: FireSource,
    clock: Clock,
    fire: FireCallback,
) -> RecordedFire:
    """Start or record one planned fire (module docstring). ``fire`` errors propagate: the
    caller retries the fire later, and it is recorded ``missed`` once too old."""
    with engine.connect() as conn:
        first = get_fire(conn, schedule.name, planned.scheduled_for)
    if first is not None:
        return RecordedFire(FireOutcome.DUPLICATE, True, first)
    outcome, run_id = planned.outcome, None
    if outcome is None:
        run_id, outcome = fire(schedule, planned.scheduled_for).run_id, FireOutcome.STARTED
    with engine.begin() as conn:
        return record_fire(
            conn,
            schedule_name=schedule.name,
            scheduled_for=planned.scheduled_for,
            outcome=outcome,
            run_id=run_id,
            source=source,
            now=clock.now(),
            detail=planned.detail,
        )


def deliver_fire(
    engine: Engine,
    schedule_name: str,
    scheduled_for: datetime,
    *,
    clock: Clock,
    fire: FireCallback,
    source: FireSource = FireSource.EXTERNAL,
) -> RecordedFire:
    """Answer one fire delivered from outside (EventBridge via the API, crontab via the CLI).

    Raises UnknownScheduleError for a schedule that does not exist. The answer's ``outcome`` is
    ``started``, ``duplicate``, ``skipped_disabled``, ``skipped_inactive_hours`` or ``missed``;
    SPEC §6 answers every one but a new start with 200, so the sender never retries it.
    """
    with engine.connect() as conn:
        schedule = require_schedule(conn, schedule_name).definition
    now = clock.now()
    outcome = decide_fire(schedule, scheduled_for, now, source)
    undetailed = PlannedFire(scheduled_for, outcome)
    planned = PlannedFire(scheduled_for, outcome, outcome_detail(schedule, undetailed, now))
    return handle_fire(engine, schedule, planned, source=source, clock=clock, fire=fire)


def submitting_fire(
    engine: Engine,
    *,
    config: ChainConfig,
    settings: Settings,
    clock: Clock,
    launcher: str | None = None,
    on_created: Callable[[int], None] | None = None,
) -> FireCallback:
    """The usual ``fire`` callback: submit the fire's run as the API does; ``on_created`` gets a
    new run's id (to launch it), never an existing one's."""

    def fire(schedule: ScheduleDef, scheduled_for: datetime) -> FireResult:
        request = fire_request(schedule, scheduled_for)
        result = submit(
            engine, request, config=config, settings=settings, clock=clock, launcher=launcher
        )
        if result.created and on_created is not None:
            on_created(result.run_id)
        return result

    return fire
