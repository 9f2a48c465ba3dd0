"""What the schedules cost on AWS per month (``fluxion-etl cost``). Pure arithmetic.

Every fire costs one EventBridge Scheduler invocation and one Lambda invocation; a fire that starts
a run (enabled, inside its active hours) also costs one Fargate worker task for the run's duration
plus the task's start-up overhead, billed per second with a one-minute minimum. The durations come
from the run ledger (median and 95th percentile); prices are parameters. Free tiers are not
deducted, so the estimate errs high. The always-on part (the service task and its load balancer)
is reported apart: it does not depend on the schedules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fluxion_etl.domain import cron
from fluxion_etl.domain.schedules import ScheduleDef

# Public list prices, us-east-1, as of this date (Linux/x86 Fargate, arm64 Lambda as deployed).
PRICES_AS_OF = "2025-06"
FARGATE_MINIMUM_SECONDS = 60
HOURS_PER_MONTH = 730


@dataclass(frozen=True, slots=True)
class Prices:
    scheduler_per_million: float = 1.00  # EventBridge Scheduler invocations
    lambda_per_million: float = 0.20  # Lambda requests
    lambda_per_gb_second: float = 0.0000133334  # Lambda duration, arm64
    fargate_per_vcpu_hour: float = 0.04048
    fargate_per_gb_hour: float = 0.004445
    alb_per_hour: float = 0.0225  # Application Load Balancer, LCUs not included


@dataclass(frozen=True, slots=True)
class TaskSize:
    vcpu: float = 0.5
    memory_gb: float = 1.0

    def per_second(self, prices: Prices) -> float:
        hourly = (
            self.vcpu * prices.fargate_per_vcpu_hour + self.memory_gb * prices.fargate_per_gb_hour
        )
        return hourly / 3600


@dataclass(frozen=True, slots=True)
class Durations:
    """Run durations of one job, in seconds; ``assumed`` when the ledger had none."""

    median: float
    p95: float
    samples: int
    assumed: bool = False


def durations_of(seconds: Sequence[float], *, assume: float) -> Durations:
    """Median and nearest-rank 95th percentile; ``assume`` for both when there is no sample."""
    if not seconds:
        return Durations(assume, assume, 0, assumed=True)
    ordered = sorted(seconds)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return Durations(median, p95, len(ordered))


@dataclass(frozen=True, slots=True)
class FireCount:
    fires: int  # deliveries: Scheduler and Lambda invocations
    runs: int  # fires inside the active hours, which start a run


def month_of_fires(schedule: ScheduleDef, start: datetime, days: int = 30) -> FireCount:
    """Fires of ``schedule`` in ``days`` days from ``start``; a disabled schedule fires nothing
    (the CDK app deploys it DISABLED)."""
    if not schedule.enabled:
        return FireCount(0, 0)
    times = list(
        cron.fires_between(schedule.cron, schedule.timezone, start, start + timedelta(days=days))
    )
    return FireCount(len(times), sum(1 for t in times if schedule.is_active_at(t)))


@dataclass(frozen=True, slots=True)
class ScheduleCost:
    name: str
    job: str
    fires: int
    runs: int
    durations: Durations
    scheduler: float
    trigger: float
    fargate_median: float
    fargate_p95: float

    @property
    def total_median(self) -> float:
        return self.scheduler + self.trigger + self.fargate_median

    @property
    def total_p95(self) -> float:
        return self.scheduler + self.trigger + self.fargate_p95


@dataclass(frozen=True, slots=True)
class CostModel:
    prices: Prices = Prices()
    worker: TaskSize = TaskSize()
    task_overhead_seconds: float = 60.0  # image pull and start-up, billed before the run starts
    lambda_seconds: float = 1.0
    lambda_memory_gb: float = 0.125

    def fargate_run(self, run_seconds: float) -> float:
        billed = max(FARGATE_MINIMUM_SECONDS, run_seconds + self.task_overhead_seconds)
        return billed * self.worker.per_second(self.prices)

    def schedule_cost(
        self, schedule: ScheduleDef, count: FireCount, durations: Durations
    ) -> ScheduleCost:
        per_invoke = self.prices.lambda_per_million / 1e6 + (
            self.lambda_seconds * self.lambda_memory_gb * self.prices.lambda_per_gb_second
        )
        return ScheduleCost(
            name=schedule.name,
            job=schedule.job.value,
            fires=count.fires,
            runs=count.runs,
            durations=durations,
            scheduler=count.fires * self.prices.scheduler_per_million / 1e6,
            trigger=count.fires * per_invoke,
            fargate_median=count.runs * self.fargate_run(durations.median),
            fargate_p95=count.runs * self.fargate_run(durations.p95),
        )

    def always_on(self, service: TaskSize, tasks: int = 1) -> dict[str, float]:
        """Monthly cost of what runs whatever the schedules: the service tasks and the ALB."""
        seconds = HOURS_PER_MONTH * 3600
        return {
            "service": tasks * seconds * service.per_second(self.prices),
            "load_balancer": HOURS_PER_MONTH * self.prices.alb_per_hour,
        }
