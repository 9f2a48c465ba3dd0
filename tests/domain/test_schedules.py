"""Schedules as data and fire decisions: disabled, active hours, missed, catch-up after downtime."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from fluxion_etl.config import load_config
from fluxion_etl.domain.schedule_hours import schedule_warnings, unsynced_open_hours
from fluxion_etl.domain.schedules import (
    DEFAULT_SCHEDULES,
    ActiveHours,
    FireSource,
    ScheduleDef,
    check_change,
    decide_fire,
    due_fires,
    fire_key,
    fire_request,
    manual_request,
    plan_fires,
    upcoming_fires,
    with_defaults,
)
from fluxion_etl.domain.states import FireOutcome, Job, Trigger
from fluxion_etl.errors import BadInputError, CronError, ScheduleChangeRefusedError

CARACAS = ZoneInfo("America/Caracas")
INVENTORY, SALES, RECONCILE = DEFAULT_SCHEDULES
EMBEDDED = FireSource.EMBEDDED


def caracas(day: int, hour: int, minute: int = 0) -> datetime:
    """A Caracas local time in January 2026 (5 January is a Monday), as UTC."""
    return datetime(2026, 1, day, hour, minute, tzinfo=CARACAS).astimezone(UTC)


def business_hours(**kwargs: object) -> ScheduleDef:
    return replace(SALES, active_hours=ActiveHours(time(7), time(21)), **kwargs)  # type: ignore[arg-type]


# --- definitions --------------------------------------------------------------------------------


def test_the_defaults_are_the_three_schedules_of_the_spec() -> None:
    assert [(s.name, s.job, s.cron, s.timezone) for s in DEFAULT_SCHEDULES] == [
        ("inventory", Job.INVENTORY, "0,30 * * * *", "America/Caracas"),
        ("sales", Job.SALES, "5,35 * * * *", "America/Caracas"),
        ("sales-reconcile", Job.RECONCILE, "0 3 * * *", "America/Caracas"),
    ]
    assert all(
        s.enabled and s.locations is None and s.active_hours is None for s in DEFAULT_SCHEDULES
    )


def test_configured_schedules_replace_defaults_by_name_and_add_others() -> None:
    hourly = replace(INVENTORY, cron="0 * * * *")
    extra = ScheduleDef("cedi-inventory", Job.INVENTORY, "15 * * * *", locations=("cedi_caracas",))
    merged = with_defaults((extra, hourly))
    assert [s.name for s in merged] == ["inventory", "sales", "sales-reconcile", "cedi-inventory"]
    assert merged[0].cron == "0 * * * *"


def test_a_definition_validates_its_cron_zone_and_catch_up() -> None:
    with pytest.raises(CronError, match="seconds"):
        ScheduleDef("x", Job.SALES, "0 0 * * * *")
    with pytest.raises(CronError, match="IANA"):
        ScheduleDef("x", Job.SALES, "0 * * * *", timezone="Caracas")
    with pytest.raises(BadInputError, match="catch_up"):
        ScheduleDef("x", Job.SALES, "0 * * * *", catch_up="sometimes")  # type: ignore[arg-type]


def test_the_seed_hash_changes_with_the_definition_only() -> None:
    assert INVENTORY.seed_hash() == replace(INVENTORY).seed_hash()
    assert INVENTORY.seed_hash() != replace(INVENTORY, enabled=False).seed_hash()


# --- active hours -------------------------------------------------------------------------------


def test_active_hours_include_both_ends() -> None:
    hours = ActiveHours(time(7), time(21))
    monday = datetime(2026, 1, 5, tzinfo=CARACAS)
    assert hours.contains(monday.replace(hour=7))
    assert hours.contains(monday.replace(hour=21))
    assert not hours.contains(monday.replace(hour=21, minute=5))
    assert not hours.contains(monday.replace(hour=6, minute=59))


def test_active_hours_across_midnight_belong_to_the_day_they_start() -> None:
    nights = ActiveHours(time(22), time(2), ("fri",))
    friday_night = datetime(2026, 1, 9, 23, tzinfo=CARACAS)
    assert nights.contains(friday_night)
    assert nights.contains(friday_night + timedelta(hours=3))  # Saturday 02:00
    assert not nights.contains(friday_night + timedelta(hours=4))
    assert not nights.contains(friday_night - timedelta(days=1))  # Thursday 23:00


def test_active_hours_parse_and_refuse_bad_input() -> None:
    assert ActiveHours.parse("07:00-21:00", ("mon", "fri")).describe() == "07:00-21:00 mon,fri"
    with pytest.raises(BadInputError, match="HH:MM-HH:MM"):
        ActiveHours.parse("7 to 9")
    with pytest.raises(BadInputError, match=r"mon\.\.sun"):
        ActiveHours(time(7), time(9), ("monday",))


# --- decide_fire --------------------------------------------------------------------------------


def test_an_on_time_fire_of_an_enabled_schedule_starts() -> None:
    at = caracas(5, 10, 5)
    assert decide_fire(SALES, at, at + timedelta(seconds=1), EMBEDDED) is None


def test_a_disabled_schedule_is_skipped_before_anything_else() -> None:
    at = caracas(5, 23, 5)  # also outside active hours and long ago
    schedule = business_hours(enabled=False)
    assert (
        decide_fire(schedule, at, at + timedelta(days=1), EMBEDDED) is FireOutcome.SKIPPED_DISABLED
    )


def test_outside_active_hours_is_skipped_and_inside_starts() -> None:
    schedule = business_hours()
    night, day = caracas(5, 22, 5), caracas(5, 12, 5)
    assert decide_fire(schedule, night, night, EMBEDDED) is FireOutcome.SKIPPED_INACTIVE_HOURS
    assert decide_fire(schedule, day, day, EMBEDDED) is None


def test_a_fire_older_than_the_maximum_event_age_is_missed() -> None:
    at = caracas(5, 10, 5)
    assert decide_fire(SALES, at, at + timedelta(seconds=3600), EMBEDDED) is None
    assert decide_fire(SALES, at, at + timedelta(seconds=3601), EMBEDDED) is FireOutcome.MISSED


def test_a_manual_fire_always_starts() -> None:
    at = caracas(5, 23, 5)
    schedule = business_hours(enabled=False)
    assert decide_fire(schedule, at, at + timedelta(days=2), FireSource.MANUAL) is None


# --- due fires and catch-up ---------------------------------------------------------------------


def test_a_day_has_48_inventory_48_sales_and_one_reconcile_at_local_times() -> None:
    start, end = caracas(5, 0) - timedelta(seconds=1), caracas(6, 0) - timedelta(seconds=1)
    inventory, sales, reconcile = (due_fires(s, start, end) for s in DEFAULT_SCHEDULES)
    assert len(inventory) == len(sales) == 48
    assert {t.astimezone(CARACAS).minute for t in inventory} == {0, 30}
    assert {t.astimezone(CARACAS).minute for t in sales} == {5, 35}
    assert [t.astimezone(CARACAS).time() for t in reconcile] == [time(3)]


def test_due_fires_after_a_long_outage_go_back_at_most_a_week() -> None:
    now = caracas(31, 12)
    due = due_fires(INVENTORY, now - timedelta(days=20), now)
    assert len(due) == 7 * 48
    assert due[0] > now - timedelta(days=7)


def test_catch_up_latest_starts_the_newest_and_records_the_rest_missed() -> None:
    now = caracas(5, 12, 10)
    due = due_fires(INVENTORY, caracas(5, 9, 50), now)  # 10:00 ... 12:00: five fire times
    plan = plan_fires(INVENTORY, due, now, EMBEDDED)
    assert [p.outcome for p in plan] == [FireOutcome.MISSED] * 4 + [None]
    assert plan[-1].scheduled_for == caracas(5, 12, 0)
    assert "maximum event age" in (plan[0].detail or "")  # 10:00 is over an hour old
    assert "superseded" in (plan[-2].detail or "")  # 11:30 would still be in time


def test_catch_up_latest_starts_nothing_when_every_fire_is_too_old() -> None:
    now = caracas(5, 14, 0)
    plan = plan_fires(INVENTORY, [caracas(5, 10), caracas(5, 10, 30)], now, EMBEDDED)
    assert [p.outcome for p in plan] == [FireOutcome.MISSED, FireOutcome.MISSED]
    assert all("maximum event age" in (p.detail or "") for p in plan)


def test_catch_up_all_starts_every_fire_still_within_the_event_age() -> None:
    schedule = replace(INVENTORY, catch_up="all")
    now = caracas(5, 12, 10)
    plan = plan_fires(schedule, due_fires(schedule, caracas(5, 10, 50), now), now, EMBEDDED)
    assert [(p.scheduled_for, p.outcome) for p in plan] == [
        (caracas(5, 11), FireOutcome.MISSED),  # 70 minutes late
        (caracas(5, 11, 30), None),
        (caracas(5, 12), None),
    ]


def test_catch_up_none_starts_only_an_on_time_fire() -> None:
    schedule = replace(INVENTORY, catch_up="none")
    late = plan_fires(schedule, [caracas(5, 12)], caracas(5, 12, 2), EMBEDDED)
    on_time = plan_fires(
        schedule, [caracas(5, 12)], caracas(5, 12, 0) + timedelta(seconds=5), EMBEDDED
    )
    assert late[0].outcome is FireOutcome.MISSED
    assert on_time[0].outcome is None


def test_catch_up_keeps_skips_of_inactive_hours_as_skips() -> None:
    schedule = business_hours()
    now = caracas(6, 7, 40)  # down from Monday 20:00 to Tuesday 07:40
    plan = plan_fires(schedule, due_fires(schedule, caracas(5, 20), now), now, EMBEDDED)
    outcomes = {p.scheduled_for.astimezone(CARACAS).strftime("%a %H:%M"): p.outcome for p in plan}
    assert outcomes["Mon 20:35"] is FireOutcome.MISSED
    assert outcomes["Mon 23:05"] is FireOutcome.SKIPPED_INACTIVE_HOURS
    assert outcomes["Tue 07:05"] is FireOutcome.MISSED
    assert outcomes["Tue 07:35"] is None
    assert [p for p in plan if p.outcome is None] == [plan[-1]]


def test_upcoming_fires_skip_inactive_hours() -> None:
    times = upcoming_fires(business_hours(), caracas(5, 20, 0), 3)
    local_times = [t.astimezone(CARACAS).strftime("%a %H:%M") for t in times]
    assert local_times == ["Mon 20:05", "Mon 20:35", "Tue 07:05"]


# --- requests -----------------------------------------------------------------------------------


def test_a_fire_submits_a_schedule_run_keyed_by_the_fire_in_utc() -> None:
    at = caracas(5, 10, 5)
    request = fire_request(replace(SALES, locations=("tienda_01",)), at)
    assert (
        request.idempotency_key == "fire:sales:2026-01-05T14:05:00+00:00" == fire_key("sales", at)
    )
    assert (request.job, request.trigger, request.locations) == (
        Job.SALES,
        Trigger.SCHEDULE,
        ("tienda_01",),
    )
    assert (request.schedule_name, request.scheduled_for) == ("sales", at)


def test_a_manual_trigger_is_a_new_cli_run_with_the_schedule_scope() -> None:
    request = manual_request(RECONCILE, caracas(5, 10), "cli:ana")
    assert (request.job, request.trigger, request.idempotency_key) == (
        Job.RECONCILE,
        Trigger.CLI,
        None,
    )
    assert request.requested_by == "cli:ana"


# --- run-time changes ---------------------------------------------------------------------------


def test_external_mode_refuses_cron_and_zone_changes_with_the_redeploy_command() -> None:
    with pytest.raises(ScheduleChangeRefusedError, match="cdk deploy"):
        check_change(SALES, replace(SALES, cron="0 * * * *"), "external")
    with pytest.raises(ScheduleChangeRefusedError, match="timezone"):
        check_change(SALES, replace(SALES, timezone="UTC"), "external")
    check_change(SALES, replace(SALES, enabled=False), "external")
    check_change(SALES, business_hours(), "external")
    check_change(SALES, replace(SALES, cron="0 * * * *"), "embedded")


# --- opening hours ------------------------------------------------------------------------------


def test_the_default_schedules_leave_no_open_hours_unsynced() -> None:
    config = load_config(None)
    for schedule in DEFAULT_SCHEDULES:
        assert unsynced_open_hours(schedule, config.locations, week_of=date(2026, 1, 7)) == []


def test_business_hours_warn_about_a_store_open_until_midnight() -> None:
    config = load_config(None)
    schedule = replace(SALES, active_hours=ActiveHours(time(7), time(21, 40)))
    found = unsynced_open_hours(schedule, config.locations, week_of=date(2026, 1, 7))
    assert [u.location_id for u in found] == ["tienda_08"]  # BOSQUE, open until 00:00
    warnings = schedule_warnings(schedule, config.locations, week_of=date(2026, 1, 7))
    assert len(warnings) == 1
    assert "tienda_08 (BOSQUE)" in warnings[0]
    assert "mon 21:35-24:00" in warnings[0]


def test_a_last_fire_before_closing_is_warned_for_every_store() -> None:
    config = load_config(None)
    schedule = business_hours()  # last sales fire 20:35, stores close at 21:00
    found = unsynced_open_hours(schedule, config.locations, week_of=date(2026, 1, 7))
    store_ids = {loc.id for loc in config.locations if loc.has_sales}
    assert {u.location_id for u in found} == store_ids  # the distribution centre has no sales
