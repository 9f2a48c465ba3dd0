"""The embedded scheduler: a simulated day across two processes, downtime, run-time changes,
active hours, failing fires, and the real threaded loop."""

from __future__ import annotations

import time as real_time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import count

import pytest
from scheduler_helpers import CARACAS, caracas, drive, runs_per_fire
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import ManualClock, ScaledClock
from fluxion_etl.domain.requests import SubmitResult
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES, ActiveHours, ScheduleDef
from fluxion_etl.domain.states import FireOutcome, RunStatus
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.scheduler.fires import FireCallback, submitting_fire
from fluxion_etl.settings import Settings
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.schedules import list_fires, seed_schedules, update_schedule

HOUR = 3600.0  # a ManualClock-driven scheduler wakes at fire times, not every second


def seed(engine: Engine, defs: tuple[ScheduleDef, ...] = DEFAULT_SCHEDULES) -> None:
    with engine.begin() as conn:
        seed_schedules(conn, defs, datetime(2026, 1, 1, tzinfo=UTC))


def scheduler(
    engine: Engine,
    clock: ManualClock | ScaledClock,
    config: ChainConfig,
    settings: Settings,
    *,
    poll: float = HOUR,
    fire: FireCallback | None = None,
) -> EmbeddedScheduler:
    fire = fire or submitting_fire(engine, config=config, settings=settings, clock=clock)
    return EmbeddedScheduler(engine, clock, fire, poll_seconds=poll)


def outcomes(answers: list, name: str) -> Counter[str]:  # type: ignore[type-arg]
    return Counter(a.outcome.value for a in answers if a.first.schedule_name == name)


# --- a simulated day ----------------------------------------------------------------------------


def test_a_day_fires_48_inventory_48_sales_one_reconcile_each_once_across_two_processes(
    db_url: str, config: ChainConfig, settings: Settings
) -> None:
    engines = [create_db_engine(db_url), create_db_engine(db_url)]
    try:
        upgrade(engines[0])
        seed(engines[0])
        clock = ManualClock(caracas(5, 0) - timedelta(seconds=1))
        processes = [scheduler(e, clock, config, settings) for e in engines]
        answers = drive(processes, clock, caracas(6, 0) - timedelta(seconds=1))
        runs = runs_per_fire(engines[0])
        with engines[0].connect() as conn:
            fires = list_fires(conn, limit=500)
    finally:
        for engine in engines:
            engine.dispose()
    per_schedule = Counter(name for name, _ in runs)
    assert per_schedule == {"inventory": 48, "sales": 48, "sales-reconcile": 1}
    assert set(runs.values()) == {1}  # every fire started exactly one run
    local = {(n, t.astimezone(CARACAS).strftime("%H:%M")) for n, t in runs}
    assert {m[-2:] for n, m in local if n == "inventory"} == {"00", "30"}
    assert {m[-2:] for n, m in local if n == "sales"} == {"05", "35"}
    assert ("sales-reconcile", "03:00") in local
    assert {f.outcome for f in fires} == {FireOutcome.STARTED}
    assert len(fires) == 97
    assert all(f.recorded_at - f.scheduled_for < timedelta(seconds=1) for f in fires)
    assert Counter(a.outcome for a in answers) == {
        FireOutcome.STARTED: 97,
        FireOutcome.DUPLICATE: 97,
    }


# --- downtime -----------------------------------------------------------------------------------


def test_after_downtime_one_inventory_run_starts_and_older_fires_are_missed(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine)
    clock = ManualClock(caracas(5, 9, 59, 59))
    drive([scheduler(engine, clock, config, settings)], clock, caracas(5, 10, 6))
    clock.set(caracas(5, 13, 10))  # the service was down from 10:06 to 13:10
    answers = scheduler(engine, clock, config, settings).tick()  # a new process: no memory
    assert outcomes(answers, "inventory") == {"missed": 5, "started": 1}  # 10:30 ... 13:00
    assert outcomes(answers, "sales") == {"missed": 5, "started": 1}  # 10:35 ... 13:05
    with engine.connect() as conn:
        missed = list_fires(conn, outcome=FireOutcome.MISSED)
    assert [f.scheduled_for.astimezone(CARACAS).strftime("%H:%M") for f in missed][-2:] == [
        "10:35",
        "10:30",
    ]
    too_old = [f for f in missed if caracas(5, 13, 10) - f.scheduled_for > timedelta(hours=1)]
    assert all("maximum event age" in (f.detail or "") for f in too_old)
    assert all("superseded" in (f.detail or "") for f in missed if f not in too_old)
    started = [k for k in runs_per_fire(engine) if k[1] > caracas(5, 10, 6)]
    assert sorted(started) == [
        ("inventory", caracas(5, 13).astimezone(UTC)),
        ("sales", caracas(5, 13, 5).astimezone(UTC)),
    ]


# --- run-time changes ---------------------------------------------------------------------------


def test_disabling_stops_at_once_and_enabling_resumes_at_the_next_fire_time(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 9, 59, 59))
    running = scheduler(engine, clock, config, settings)
    drive([running], clock, caracas(5, 10, 10))
    with engine.begin() as conn:
        update_schedule(conn, "inventory", enabled=False, by="cli:ana", now=clock.now())
    off = drive([running], clock, caracas(5, 11, 10))
    with engine.begin() as conn:
        update_schedule(conn, "inventory", enabled=True, by="cli:ana", now=clock.now())
    on = drive([running], clock, caracas(5, 12, 10))
    assert [(a.first.scheduled_for, a.outcome) for a in off] == [
        (caracas(5, 10, 30).astimezone(UTC), FireOutcome.SKIPPED_DISABLED),
        (caracas(5, 11).astimezone(UTC), FireOutcome.SKIPPED_DISABLED),
    ]
    assert [(a.first.scheduled_for, a.outcome) for a in on] == [
        (caracas(5, 11, 30).astimezone(UTC), FireOutcome.STARTED),  # no catch-up of 10:30, 11:00
        (caracas(5, 12).astimezone(UTC), FireOutcome.STARTED),
    ]
    assert len(runs_per_fire(engine)) == 3  # 10:00, 11:30, 12:00


def test_a_schedule_limited_to_active_hours_fires_only_inside_them(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    limited = replace(DEFAULT_SCHEDULES[0], active_hours=ActiveHours(time(7), time(21)))
    seed(engine, (limited,))
    clock = ManualClock(caracas(5, 0) - timedelta(seconds=1))
    answers = drive([scheduler(engine, clock, config, settings)], clock, caracas(5, 23, 59))
    started = [a.first.scheduled_for.astimezone(CARACAS).time() for a in answers if a.run_id]
    assert len(started) == 29  # 07:00 ... 21:00, both included
    assert min(started) == time(7)
    assert max(started) == time(21)
    assert outcomes(answers, "inventory")["skipped_inactive_hours"] == 48 - 29


def test_a_cron_change_applies_at_the_next_tick(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 9, 59, 59))
    running = scheduler(engine, clock, config, settings)
    drive([running], clock, caracas(5, 10, 1))
    with engine.begin() as conn:
        update_schedule(conn, "inventory", cron="15 * * * *", by="cli:ana", now=clock.now())
    answers = drive([running], clock, caracas(5, 12, 1))
    assert [a.first.scheduled_for.astimezone(CARACAS).strftime("%H:%M") for a in answers] == [
        "10:15",
        "11:15",
    ]


# --- failures -----------------------------------------------------------------------------------


def test_a_fire_that_cannot_start_is_retried_then_recorded_missed_with_the_reason(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 9, 59, 59))
    calls = count()

    def broken(schedule: ScheduleDef, scheduled_for: datetime) -> SubmitResult:
        next(calls)
        raise ConnectionError("database unreachable")

    running = scheduler(engine, clock, config, settings, poll=600, fire=broken)
    answers = drive([running], clock, caracas(5, 10, 20))  # retried at 10:00, 10:10, 10:20
    assert answers == []
    assert next(calls) == 3
    clock.set(caracas(5, 11, 10))
    late = running.tick()
    assert [
        (a.first.scheduled_for.astimezone(CARACAS).strftime("%H:%M"), a.outcome) for a in late
    ] == [
        ("10:00", FireOutcome.MISSED),
        ("10:30", FireOutcome.MISSED),
    ]
    assert "could not start: ConnectionError: database unreachable" in (late[0].first.detail or "")


def test_a_fire_recovers_when_its_start_succeeds_within_the_event_age(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 9, 59, 59))
    good = submitting_fire(engine, config=config, settings=settings, clock=clock)
    attempts = count()

    def flaky(schedule: ScheduleDef, scheduled_for: datetime) -> SubmitResult:
        if next(attempts) < 2:
            raise TimeoutError("slow database")
        return good(schedule, scheduled_for)

    answers = drive(
        [scheduler(engine, clock, config, settings, poll=60, fire=flaky)], clock, caracas(5, 10, 5)
    )
    assert [(a.outcome, a.first.recorded_at) for a in answers] == [
        (FireOutcome.STARTED, caracas(5, 10, 2).astimezone(UTC)),
    ]


# --- the threaded loop --------------------------------------------------------------------------


def test_the_loop_fires_within_a_second_of_the_fire_time_and_stops_promptly(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    due = caracas(5, 10)
    clock = ScaledClock(due - timedelta(seconds=0.4), speed=1.0)
    loop = scheduler(engine, clock, config, settings, poll=0.2)
    loop.start()
    try:
        deadline = real_time.monotonic() + 5
        while real_time.monotonic() < deadline:
            with engine.connect() as conn:
                fires = list_fires(conn)
            if fires:
                break
            real_time.sleep(0.05)
    finally:
        stopping = real_time.monotonic()
        loop.stop()
        stop_took = real_time.monotonic() - stopping
    assert not loop.is_alive()
    assert stop_took < 1.0
    assert [(f.scheduled_for, f.outcome) for f in fires] == [
        (due.astimezone(UTC), FireOutcome.STARTED)
    ]
    assert fires[0].recorded_at - fires[0].scheduled_for < timedelta(seconds=1)


def test_two_threaded_loops_on_a_fast_clock_start_each_fire_once(
    db_url: str, config: ChainConfig, settings: Settings
) -> None:
    engines = [create_db_engine(db_url), create_db_engine(db_url)]
    upgrade(engines[0])
    seed(engines[0], DEFAULT_SCHEDULES[:2])
    start = caracas(5, 9, 58)
    clock = ScaledClock(start, speed=1800.0)  # half an hour of simulated time per second
    loops = [scheduler(e, clock, config, settings, poll=30) for e in engines]
    try:
        for loop in loops:
            loop.start()
        real_time.sleep(2.4)  # about 72 simulated minutes: 09:58 ... 11:10
    finally:
        for loop in loops:
            loop.stop()
    runs = runs_per_fire(engines[0])
    with engines[0].connect() as conn:
        fires = list_fires(conn)
    for engine in engines:
        engine.dispose()
    inventory = sorted(t for name, t in runs if name == "inventory")
    assert inventory[:2] == [caracas(5, 10).astimezone(UTC), caracas(5, 10, 30).astimezone(UTC)]
    assert set(runs.values()) == {1}
    assert {f.outcome for f in fires} == {FireOutcome.STARTED}
    assert len(fires) == len(runs)


def test_the_loop_sleeps_until_the_next_fire_time_or_the_poll_interval(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 10, 20))
    slow_poll = scheduler(engine, clock, config, settings, poll=HOUR)
    fast_poll = scheduler(engine, clock, config, settings, poll=5)
    slow_poll.tick()
    fast_poll.tick()
    assert slow_poll.next_wake(clock.now()) == caracas(5, 10, 30).astimezone(UTC)
    assert fast_poll.next_wake(clock.now()) == clock.now() + timedelta(seconds=5)


def test_a_run_status_is_queued_for_the_service_to_launch(
    engine: Engine, config: ChainConfig, settings: Settings
) -> None:
    seed(engine, DEFAULT_SCHEDULES[:1])
    clock = ManualClock(caracas(5, 9, 59, 59))
    launched: list[int] = []
    fire = submitting_fire(
        engine, config=config, settings=settings, clock=clock, on_created=launched.append
    )
    drive([EmbeddedScheduler(engine, clock, fire, poll_seconds=HOUR)], clock, caracas(5, 10, 1))
    again = fire(DEFAULT_SCHEDULES[0], caracas(5, 10).astimezone(UTC))  # a repeated fire
    assert len(launched) == 1
    assert (again.created, again.run_id, again.status) == (False, launched[0], RunStatus.QUEUED)


@pytest.mark.parametrize("poll", [0, -1])
def test_a_poll_interval_must_be_positive(sqlite_url: str, poll: float) -> None:
    engine = create_db_engine(sqlite_url)
    with pytest.raises(ValueError, match="positive"):
        EmbeddedScheduler(engine, ManualClock(caracas(5, 10)), _never, poll_seconds=poll)
    engine.dispose()


def _never(schedule: ScheduleDef, scheduled_for: datetime) -> SubmitResult:
    raise AssertionError("not fired")
