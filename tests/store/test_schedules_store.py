"""Persisted schedules (seeded, run-time changes win) and fires (once per schedule and time),
on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import Engine

from fluxion_etl.config import parse_config
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES, ActiveHours, FireSource
from fluxion_etl.domain.states import FireOutcome, Job
from fluxion_etl.errors import CronError, ScheduleChangeRefusedError, UnknownScheduleError
from fluxion_etl.store import audit
from fluxion_etl.store.schedules import (
    SEED_ACTOR,
    definitions_from_config,
    get_schedule,
    last_fire,
    list_fires,
    list_schedules,
    record_fire,
    require_schedule,
    seed_schedules,
    update_schedule,
)

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
INVENTORY, SALES, RECONCILE = DEFAULT_SCHEDULES


def seeded(engine: Engine) -> None:
    with engine.begin() as conn:
        seed_schedules(conn, DEFAULT_SCHEDULES, NOW)


# --- seeding ------------------------------------------------------------------------------------


def test_seeding_inserts_the_defaults_once(engine: Engine) -> None:
    with engine.begin() as conn:
        first = seed_schedules(conn, DEFAULT_SCHEDULES, NOW)
        again = seed_schedules(conn, DEFAULT_SCHEDULES, NOW + timedelta(hours=1))
        stored = list_schedules(conn)
    assert first.inserted == ("inventory", "sales", "sales-reconcile")
    assert again.unchanged == first.inserted
    assert [s.definition for s in stored] == sorted(DEFAULT_SCHEDULES, key=lambda s: s.name)
    assert {s.updated_by for s in stored} == {SEED_ACTOR}


def test_a_changed_configuration_is_followed_while_nobody_changed_the_row(engine: Engine) -> None:
    seeded(engine)
    hourly = replace(INVENTORY, cron="0 * * * *")
    with engine.begin() as conn:
        report = seed_schedules(conn, (hourly, SALES, RECONCILE), NOW)
        stored = require_schedule(conn, "inventory")
    assert report.updated == ("inventory",)
    assert stored.definition.cron == "0 * * * *"
    assert stored.seed_hash == hourly.seed_hash()


def test_a_run_time_change_wins_over_a_later_configuration_change(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn:
        update_schedule(conn, "inventory", enabled=False, by="cli:ana", now=NOW)
        report = seed_schedules(conn, (replace(INVENTORY, cron="0 * * * *"),), NOW)
        stored = require_schedule(conn, "inventory")
    assert report.kept == ("inventory",)
    assert (stored.definition.cron, stored.definition.enabled) == ("0,30 * * * *", False)
    assert stored.changed_at_run_time


def test_configured_schedules_fill_in_around_the_defaults() -> None:
    config = parse_config(
        {
            "locations": [
                {
                    "id": "t1",
                    "name": "T1",
                    "branch_code": "S1",
                    "warehouses": [{"code": "W", "role": "sales_floor"}],
                },
            ],
            "schedules": [
                {
                    "name": "sales",
                    "job": "sales",
                    "cron": "5,35 7-21 * * *",
                    "active_hours": {"start": "07:00", "end": "21:30"},
                },
            ],
        },
        "test",
    )
    defs = definitions_from_config(config)
    assert [d.name for d in defs] == ["inventory", "sales", "sales-reconcile"]
    assert defs[1].cron == "5,35 7-21 * * *"
    assert defs[1].active_hours == ActiveHours(time(7), time(21, 30))


def test_concurrent_seeding_inserts_each_schedule_once(engine: Engine) -> None:
    reports = []

    def seed() -> None:
        with engine.begin() as conn:
            reports.append(seed_schedules(conn, DEFAULT_SCHEDULES, NOW))

    threads = [threading.Thread(target=seed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r.inserted) for r in reports) == [0, 0, 0, 3]


# --- run-time changes ---------------------------------------------------------------------------


def test_disable_and_enable_are_stored_with_who_and_audited(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn:
        off = update_schedule(conn, "sales", enabled=False, by="token:eventbridge", now=NOW)
        on = update_schedule(conn, "sales", enabled=True, by="cli:ana", now=NOW)
        trail = audit.entries(conn, action="schedule.update")
    assert (off.definition.enabled, on.definition.enabled) == (False, True)
    assert on.updated_by == "cli:ana"
    assert [(e.actor, e.detail) for e in trail] == [
        ("cli:ana", {"enabled": {"from": False, "to": True}}),
        ("token:eventbridge", {"enabled": {"from": True, "to": False}}),
    ]


def test_a_change_to_the_same_value_writes_nothing(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn:
        unchanged = update_schedule(conn, "sales", enabled=True, by="cli:ana", now=NOW)
        assert audit.entries(conn) == []
    assert unchanged.updated_by == SEED_ACTOR


def test_cron_zone_and_active_hours_changes_are_validated(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn:
        with pytest.raises(CronError, match="has 6 fields"):
            update_schedule(conn, "sales", cron="0 0 * * * *", by="x", now=NOW)
        with pytest.raises(CronError, match="IANA"):
            update_schedule(conn, "sales", timezone="Venezuela", by="x", now=NOW)
        hours = ActiveHours(time(7), time(22), ("mon", "tue"))
        changed = update_schedule(
            conn, "sales", cron="5 * * * *", timezone="UTC", active_hours=hours, by="x", now=NOW
        )
        assert get_schedule(conn, "sales") == changed
        cleared = update_schedule(conn, "sales", clear_active_hours=True, by="x", now=NOW)
    assert changed.definition.active_hours == hours
    assert cleared.definition.active_hours is None


def test_external_mode_refuses_a_cron_change_naming_the_redeploy(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn:
        with pytest.raises(ScheduleChangeRefusedError, match="cdk deploy"):
            update_schedule(conn, "sales", cron="0 * * * *", by="x", now=NOW, mode="external")
        disabled = update_schedule(conn, "sales", enabled=False, by="x", now=NOW, mode="external")
    assert not disabled.definition.enabled


def test_an_unknown_schedule_names_the_known_ones(engine: Engine) -> None:
    seeded(engine)
    with engine.begin() as conn, pytest.raises(UnknownScheduleError, match="known: inventory"):
        update_schedule(conn, "ventas", enabled=False, by="x", now=NOW)


# --- fires --------------------------------------------------------------------------------------


def fire(engine: Engine, at: datetime, outcome: FireOutcome, run_id: int | None = None):  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        return record_fire(
            conn,
            schedule_name="inventory",
            scheduled_for=at,
            outcome=outcome,
            run_id=run_id,
            source=FireSource.EMBEDDED,
            now=NOW,
            detail=None,
        )


def test_a_repeated_fire_is_a_no_op_answered_duplicate_with_the_first_outcome(
    engine: Engine,
) -> None:
    first = fire(engine, NOW, FireOutcome.STARTED, run_id=7)
    again = fire(engine, NOW, FireOutcome.MISSED)
    assert (first.outcome, first.existing, first.run_id) == (FireOutcome.STARTED, False, 7)
    assert (again.outcome, again.existing, again.run_id) == (FireOutcome.DUPLICATE, True, 7)
    assert again.first.outcome is FireOutcome.STARTED
    with engine.connect() as conn:
        assert len(list_fires(conn)) == 1


def test_concurrent_deliveries_of_one_fire_record_it_once(engine: Engine) -> None:
    answers = []
    barrier = threading.Barrier(4)

    def deliver(run_id: int) -> None:
        barrier.wait()
        answers.append(fire(engine, NOW, FireOutcome.STARTED, run_id=run_id))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.outcome.value for a in answers) == ["duplicate"] * 3 + ["started"]
    assert len({a.run_id for a in answers}) == 1


def test_fires_are_listed_newest_first_and_filtered(engine: Engine) -> None:
    for minutes, outcome in (
        (0, FireOutcome.MISSED),
        (30, FireOutcome.MISSED),
        (60, FireOutcome.STARTED),
    ):
        fire(engine, NOW + timedelta(minutes=minutes), outcome)
    with engine.connect() as conn:
        everything = list_fires(conn)
        missed = list_fires(conn, outcome=FireOutcome.MISSED)
        recent = list_fires(conn, since=NOW + timedelta(minutes=30))
        latest = last_fire(conn, "inventory")
        none = last_fire(conn, "sales")
    assert [f.scheduled_for for f in everything] == [
        NOW + timedelta(minutes=m) for m in (60, 30, 0)
    ]
    assert [f.scheduled_for for f in missed] == [NOW + timedelta(minutes=30), NOW]
    assert len(recent) == 2
    assert latest is not None
    assert (latest.scheduled_for, latest.outcome, latest.source) == (
        NOW + timedelta(hours=1),
        FireOutcome.STARTED,
        FireSource.EMBEDDED,
    )
    assert none is None


def test_stored_definitions_round_trip_every_field(engine: Engine) -> None:
    custom = replace(
        SALES,
        name="night",
        job=Job.INVENTORY,
        locations=("tienda_01", "tienda_08"),
        active_hours=ActiveHours(time(22), time(2), ("fri", "sat")),
        retry_attempts=0,
        max_event_age_seconds=600,
        catch_up="all",
    )
    with engine.begin() as conn:
        seed_schedules(conn, (custom,), NOW)
        assert require_schedule(conn, "night").definition == custom


def test_a_manual_trigger_does_not_move_where_the_scheduler_resumes(engine: Engine) -> None:
    fire(engine, NOW, FireOutcome.STARTED, run_id=1)
    with engine.begin() as conn:
        record_fire(
            conn,
            schedule_name="inventory",
            scheduled_for=NOW + timedelta(minutes=47),
            outcome=FireOutcome.STARTED,
            run_id=2,
            source=FireSource.MANUAL,
            now=NOW,
        )
        latest = last_fire(conn, "inventory")
        everything = list_fires(conn)
    assert latest is not None
    assert latest.scheduled_for == NOW
    assert [f.source for f in everything] == [FireSource.MANUAL, FireSource.EMBEDDED]
