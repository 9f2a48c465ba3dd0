"""Fires delivered from outside (EventBridge through the API, crontab through the CLI): the same
decisions and record as the embedded scheduler, every delivery answered so none is retried."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from scheduler_helpers import caracas, runs_per_fire
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES, ActiveHours, FireSource
from fluxion_etl.domain.states import FireOutcome
from fluxion_etl.errors import UnknownScheduleError
from fluxion_etl.scheduler.fires import deliver_fire, submitting_fire
from fluxion_etl.settings import Settings
from fluxion_etl.store.schedules import list_fires, seed_schedules, update_schedule

AT = caracas(5, 10, 5).astimezone(UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(AT + timedelta(seconds=20))


@pytest.fixture
def deliver(engine: Engine, clock: ManualClock, config: ChainConfig, settings: Settings):  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        seed_schedules(conn, DEFAULT_SCHEDULES, clock.now())
    fire = submitting_fire(engine, config=config, settings=settings, clock=clock)

    def deliver(name: str, at: datetime = AT):  # type: ignore[no-untyped-def]
        return deliver_fire(engine, name, at, clock=clock, fire=fire)

    return deliver


def test_a_fire_starts_once_and_a_redelivery_is_a_duplicate_of_the_same_run(
    engine: Engine,
    deliver,  # type: ignore[no-untyped-def]
) -> None:
    first, again = deliver("sales"), deliver("sales")
    assert (first.outcome, again.outcome) == (FireOutcome.STARTED, FireOutcome.DUPLICATE)
    assert first.run_id is not None
    assert again.run_id == first.run_id
    assert again.first.source is FireSource.EXTERNAL
    assert runs_per_fire(engine) == {("sales", AT): 1}


def test_a_disabled_schedule_answers_skipped_without_a_run(
    engine: Engine, clock: ManualClock, deliver
) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        update_schedule(
            conn, "sales", enabled=False, by="token:ops", now=clock.now(), mode="external"
        )
    answer = deliver("sales")
    assert (answer.outcome, answer.run_id) == (FireOutcome.SKIPPED_DISABLED, None)
    assert answer.first.detail == "the schedule is disabled"
    assert runs_per_fire(engine) == {}


def test_outside_active_hours_answers_skipped(engine: Engine, clock: ManualClock, deliver) -> None:  # type: ignore[no-untyped-def]
    hours = replace(DEFAULT_SCHEDULES[1], active_hours=ActiveHours(time(12), time(20))).active_hours
    with engine.begin() as conn:
        update_schedule(conn, "sales", active_hours=hours, by="token:ops", now=clock.now())
    answer = deliver("sales")
    assert answer.outcome is FireOutcome.SKIPPED_INACTIVE_HOURS
    assert "12:00-20:00" in (answer.first.detail or "")


def test_a_delivery_older_than_the_maximum_event_age_is_missed(clock: ManualClock, deliver) -> None:  # type: ignore[no-untyped-def]
    clock.set(AT + timedelta(hours=1, seconds=1))
    answer = deliver("sales")
    assert answer.outcome is FireOutcome.MISSED
    assert "maximum event age" in (answer.first.detail or "")


def test_an_unknown_schedule_is_refused(deliver) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownScheduleError, match="ventas"):
        deliver("ventas")


def test_every_answer_is_recorded_once(engine: Engine, deliver) -> None:  # type: ignore[no-untyped-def]
    for name in ("inventory", "sales", "sales", "sales-reconcile"):
        deliver(name)
    with engine.connect() as conn:
        recorded = list_fires(conn)
    assert sorted(f.schedule_name for f in recorded) == ["inventory", "sales", "sales-reconcile"]
