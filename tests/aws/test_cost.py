"""``fluxion-etl cost``: fires per month from the schedules, run durations from the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from fluxion_etl.cli import main as cli_main
from fluxion_etl.domain.costs import (
    PRICES_AS_OF,
    CostModel,
    Durations,
    Prices,
    TaskSize,
    durations_of,
    month_of_fires,
)
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES, ActiveHours, ScheduleDef
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.store import ledger

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
INVENTORY, SALES, RECONCILE = DEFAULT_SCHEDULES


def test_median_and_nearest_rank_p95() -> None:
    assert durations_of(list(range(1, 101)), assume=0) == Durations(50.5, 95, 100)
    assert durations_of([30, 10, 20], assume=0) == Durations(20, 30, 3)
    assert durations_of([], assume=90) == Durations(90, 90, 0, assumed=True)


def test_fires_in_a_month_of_the_default_schedules() -> None:
    assert month_of_fires(INVENTORY, NOW).fires == 48 * 30
    assert month_of_fires(SALES, NOW).runs == 48 * 30
    assert month_of_fires(RECONCILE, NOW).fires == 30


def test_fires_outside_active_hours_are_delivered_but_start_no_run() -> None:
    business = ScheduleDef(
        "inventory", Job.INVENTORY, "0,30 * * * *", active_hours=ActiveHours(time(7), time(21))
    )
    count = month_of_fires(business, NOW)
    assert count.fires == 48 * 30
    assert count.runs == 29 * 30  # 07:00 through 21:00 local (the end is inclusive), every day


def test_a_disabled_schedule_costs_nothing() -> None:
    disabled = ScheduleDef("sales", Job.SALES, "5,35 * * * *", enabled=False)
    assert month_of_fires(disabled, NOW).fires == 0


def test_fargate_bills_the_run_plus_start_up_with_a_one_minute_minimum() -> None:
    model = CostModel(Prices(fargate_per_vcpu_hour=3.6, fargate_per_gb_hour=0), TaskSize(1, 1), 30)
    assert model.fargate_run(0) == pytest.approx(60 * 0.001)  # one minute at $0.001 a second
    assert model.fargate_run(90) == pytest.approx(120 * 0.001)


def test_schedule_cost_adds_scheduler_lambda_and_fargate() -> None:
    model = CostModel(Prices(scheduler_per_million=1, lambda_per_million=0, lambda_per_gb_second=0))
    cost = model.schedule_cost(INVENTORY, month_of_fires(INVENTORY, NOW), Durations(60, 600, 5))
    assert cost.scheduler == pytest.approx(1440 / 1e6)
    assert cost.fargate_p95 > cost.fargate_median > 0
    assert cost.total_p95 == pytest.approx(cost.scheduler + cost.trigger + cost.fargate_p95)


def _finished_run(engine: Engine, job: Job, seconds: float, trigger: Trigger) -> None:
    started = NOW - timedelta(days=1)
    with engine.begin() as conn:
        run_id = ledger.create_run(conn, RunRequest(job, trigger), now=started).run_id
        ledger.claim_run(conn, run_id, owner="t", now=started, deadline_at=NOW)
        ledger.finish_run(
            conn, run_id, RunStatus.SUCCEEDED, now=started + timedelta(seconds=seconds)
        )


def test_cost_command_measures_durations_in_the_ledger(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seconds in (40, 50, 60, 70, 400):
        _finished_run(sqlite_engine, Job.INVENTORY, seconds, Trigger.SCHEDULE)
    _finished_run(sqlite_engine, Job.SALES, 5000, Trigger.BACKFILL)  # not what a fire costs
    monkeypatch.setenv("FLUXION_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("FLUXION_CONFIG", raising=False)
    monkeypatch.setenv("FLUXION_CLOCK", f"scaled:{NOW.isoformat()}@0x0")
    cli_main._register()

    result = CliRunner().invoke(cli_main.app, ["cost", "--json", "--assume-seconds", "99"])

    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["prices_as_of"] == PRICES_AS_OF
    assert answer["prices"]["fargate_per_vcpu_hour"] == Prices().fargate_per_vcpu_hour
    by_name = {s["name"]: s for s in answer["schedules"]}
    inventory, sales = by_name["inventory"], by_name["sales"]
    assert (inventory["median_seconds"], inventory["p95_seconds"]) == (60, 400)
    assert (inventory["duration_samples"], inventory["duration_assumed"]) == (5, False)
    assert (sales["median_seconds"], sales["duration_assumed"]) == (99, True)
    per_second = TaskSize().per_second(Prices())
    assert inventory["fargate_median_usd"] == pytest.approx(1440 * 120 * per_second, abs=1e-4)
    assert inventory["fargate_p95_usd"] == pytest.approx(1440 * 460 * per_second, abs=1e-4)
    assert answer["always_on_usd"]["load_balancer"] == pytest.approx(730 * 0.0225, abs=0.01)


def test_cost_command_prints_its_prices_and_their_date(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUXION_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("FLUXION_CONFIG", raising=False)
    cli_main._register()

    result = CliRunner().invoke(cli_main.app, ["cost", "--fargate-per-vcpu-hour", "0.05"])

    assert result.exit_code == 0, result.output
    assert f"list prices of {PRICES_AS_OF}" in result.stdout
    assert "--fargate-per-vcpu-hour 0.05" in result.stdout
    assert "--scheduler-per-million 1" in result.stdout
