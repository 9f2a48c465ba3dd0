"""``cost``: what the schedules cost per month on AWS, from their fires and the run durations
measured in the ledger (median and 95th percentile). Prices are options; their defaults and the
date they were taken are printed, so an estimate never passes for a quote."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select

from fluxion_etl.cli.common import clock_from_env, print_json, settings_and_config
from fluxion_etl.domain.costs import (
    PRICES_AS_OF,
    CostModel,
    Durations,
    Prices,
    ScheduleCost,
    TaskSize,
    durations_of,
    month_of_fires,
)
from fluxion_etl.domain.states import RunStatus, Trigger
from fluxion_etl.store.db import check_schema, create_db_engine
from fluxion_etl.store.schedules import definitions_from_config
from fluxion_etl.store.schema import runs

DEFAULTS = Prices()
MEASURED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.TIMED_OUT)


def register(app: typer.Typer) -> None:
    app.command("cost")(cost_command)


def _price(default: float, what: str) -> Any:
    return typer.Option(help=f"{what} (default: {default} USD, list price of {PRICES_AS_OF}).")


def cost_command(
    *,
    days: Annotated[
        int, typer.Option(min=1, help="Measure run durations over this many days.")
    ] = 30,
    assume_seconds: Annotated[
        float,
        typer.Option(min=0, help="Run duration to assume for a job the ledger has no runs of."),
    ] = 120.0,
    worker_vcpu: Annotated[float, typer.Option(help="Worker task vCPU (the CDK app: 0.5).")] = 0.5,
    worker_memory_gb: Annotated[float, typer.Option(help="Worker task memory, GB.")] = 1.0,
    task_overhead_seconds: Annotated[
        float, typer.Option(help="Billed start-up of a task before its run starts (image pull).")
    ] = 60.0,
    service_vcpu: Annotated[float, typer.Option(help="Service task vCPU (always on).")] = 0.5,
    service_memory_gb: Annotated[float, typer.Option(help="Service task memory, GB.")] = 1.0,
    scheduler_per_million: Annotated[
        float, _price(DEFAULTS.scheduler_per_million, "Scheduler, per million invocations")
    ] = DEFAULTS.scheduler_per_million,
    lambda_per_million: Annotated[
        float, _price(DEFAULTS.lambda_per_million, "Lambda, per million requests")
    ] = DEFAULTS.lambda_per_million,
    lambda_per_gb_second: Annotated[
        float, _price(DEFAULTS.lambda_per_gb_second, "Lambda, per GB-second (arm64)")
    ] = DEFAULTS.lambda_per_gb_second,
    fargate_per_vcpu_hour: Annotated[
        float, _price(DEFAULTS.fargate_per_vcpu_hour, "Fargate, per vCPU-hour")
    ] = DEFAULTS.fargate_per_vcpu_hour,
    fargate_per_gb_hour: Annotated[
        float, _price(DEFAULTS.fargate_per_gb_hour, "Fargate, per GB-hour")
    ] = DEFAULTS.fargate_per_gb_hour,
    alb_per_hour: Annotated[
        float, _price(DEFAULTS.alb_per_hour, "Application Load Balancer, per hour")
    ] = DEFAULTS.alb_per_hour,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Monthly AWS cost of the schedules (Scheduler, Lambda, Fargate) and the always-on service."""
    prices = Prices(
        scheduler_per_million,
        lambda_per_million,
        lambda_per_gb_second,
        fargate_per_vcpu_hour,
        fargate_per_gb_hour,
        alb_per_hour,
    )
    model = CostModel(prices, TaskSize(worker_vcpu, worker_memory_gb), task_overhead_seconds)
    settings, config = settings_and_config()
    now = clock_from_env().now()
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        check_schema(engine)
        measured = run_seconds_by_job(engine, since=now - timedelta(days=days))
    finally:
        engine.dispose()
    costs = [
        model.schedule_cost(
            s, month_of_fires(s, now), durations_of(measured[s.job.value], assume=assume_seconds)
        )
        for s in definitions_from_config(config)
    ]
    fixed = model.always_on(TaskSize(service_vcpu, service_memory_gb))
    if as_json:
        print_json(_as_json(costs, fixed, prices, days))
    else:
        _print(costs, fixed, prices, days)


def run_seconds_by_job(engine: Engine, *, since: datetime) -> defaultdict[str, list[float]]:
    """Durations of the finished runs since ``since``, per job; backfills are left out (they read
    many days at once, not what a scheduled run does)."""
    query = select(runs.c.job, runs.c.started_at, runs.c.finished_at).where(
        runs.c.status.in_([s.value for s in MEASURED]),
        runs.c.trigger != Trigger.BACKFILL.value,
        runs.c.started_at.is_not(None),
        runs.c.finished_at.is_not(None),
        runs.c.created_at >= since,
    )
    out: defaultdict[str, list[float]] = defaultdict(list)
    with engine.connect() as conn:
        for row in conn.execute(query):
            out[row.job].append(max(0.0, (row.finished_at - row.started_at).total_seconds()))
    return out


def _duration_text(d: Durations) -> str:
    return f"{d.median:.0f}?" if d.assumed else f"{d.median:.0f}/{d.p95:.0f}"


def _print(costs: list[ScheduleCost], fixed: dict[str, float], prices: Prices, days: int) -> None:
    console = Console()
    table = Table(title=f"Per 30-day month; run seconds measured over the last {days} days")
    for header in ("schedule", "fires", "runs", "run s", "Sched+λ", "Fargate", "Fargate p95"):
        table.add_column(header, justify="left" if header == "schedule" else "right")
    for c in costs:
        name = c.name if c.job == c.name else f"{c.name} ({c.job})"
        table.add_row(
            name,
            str(c.fires),
            str(c.runs),
            _duration_text(c.durations),
            _usd(c.scheduler + c.trigger),
            _usd(c.fargate_median),
            _usd(c.fargate_p95),
        )
    console.print(table)
    low = sum(c.total_median for c in costs)
    high = sum(c.total_p95 for c in costs)
    console.print(f"Schedules: {_usd(low)} .. {_usd(high)} a month (median .. p95 run durations).")
    if any(c.durations.assumed for c in costs):
        console.print("run s with ?: no finished run in the ledger, --assume-seconds used.")
    console.print(
        f"Always on: service task {_usd(fixed['service'])}, load balancer "
        f"{_usd(fixed['load_balancer'])} a month (plus LCUs, logs, data transfer, database)."
    )
    console.print(f"Prices, USD, us-east-1 list prices of {PRICES_AS_OF}, free tiers not deducted:")
    for name, value in _prices(prices).items():
        console.print(
            f"  --{name.replace('_', '-')} {format(value, '.10f').rstrip('0').rstrip('.')}"
        )


def _as_json(
    costs: list[ScheduleCost], fixed: dict[str, float], prices: Prices, days: int
) -> dict[str, Any]:
    return {
        "period": "30-day month",
        "durations_measured_days": days,
        "prices_as_of": PRICES_AS_OF,
        "prices": _prices(prices),
        "schedules": [
            {
                "name": c.name,
                "job": c.job,
                "fires": c.fires,
                "runs": c.runs,
                "median_seconds": c.durations.median,
                "p95_seconds": c.durations.p95,
                "duration_samples": c.durations.samples,
                "duration_assumed": c.durations.assumed,
                "scheduler_usd": round(c.scheduler, 4),
                "lambda_usd": round(c.trigger, 4),
                "fargate_median_usd": round(c.fargate_median, 4),
                "fargate_p95_usd": round(c.fargate_p95, 4),
            }
            for c in costs
        ],
        "schedules_total_usd": {
            "median": round(sum(c.total_median for c in costs), 2),
            "p95": round(sum(c.total_p95 for c in costs), 2),
        },
        "always_on_usd": {k: round(v, 2) for k, v in fixed.items()},
    }


def _prices(prices: Prices) -> dict[str, float]:
    return {
        "scheduler_per_million": prices.scheduler_per_million,
        "lambda_per_million": prices.lambda_per_million,
        "lambda_per_gb_second": prices.lambda_per_gb_second,
        "fargate_per_vcpu_hour": prices.fargate_per_vcpu_hour,
        "fargate_per_gb_hour": prices.fargate_per_gb_hour,
        "alb_per_hour": prices.alb_per_hour,
    }


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
