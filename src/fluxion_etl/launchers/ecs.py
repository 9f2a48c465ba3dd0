"""``ecs``: each run executes as an ECS Fargate task ``fluxion-etl worker --run-id ID``.

The caller has queued the run in the database; ``launch`` hands it to ECS with one ``RunTask`` (the
run id as a command override) and stores the task ARN as the run's ``external_ref``. The worker
reports into the same database, so the ledger, the API and the control centre show ECS runs like
local ones.

- A ``RunTask`` that fails (an AWS error such as a missing permission, or a ``failures`` entry such
  as no capacity) fails the run with category ``launch`` and AWS's reason, then raises
  ``LaunchError``. The launcher records it itself so the reason is in the ledger even when the
  caller cannot (its own finish is then a no-op: a final status is never overwritten).
- ``poll`` asks ECS about the tasks of unfinished runs: a task that stopped, or that ECS no longer
  knows, while its run is unfinished leaves the run ``abandoned`` with the stopped reason and the
  exit code. A worker that finished its run before its task stopped is left alone (the ledger's
  conditional finish decides).
- ``poll`` also publishes, at most once a minute, each job's age of last success as a CloudWatch
  metric in embedded metric format (EMF) on stdout: the awslogs driver ships it, CloudWatch
  extracts it, and the stale-data alarm of the CDK app reads it (missing data counts as stale).

``boto3`` is imported only when a client is built here, so the rest of the product never needs it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO

import structlog
from sqlalchemy import Engine, select

from fluxion_etl.config import ChainConfig, load_config
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.states import ErrorCategory, Job, RunStatus
from fluxion_etl.launchers import EXIT_NOT_CLAIMED, LaunchError
from fluxion_etl.settings import Settings
from fluxion_etl.store import leases, ledger, sync_state
from fluxion_etl.store.schema import runs

log = structlog.get_logger("fluxion.launcher")

METRIC_NAMESPACE = "FluxionEtl"
LAST_SUCCESS_AGE_METRIC = "LastSuccessAgeSeconds"
METRICS_EVERY_SECONDS = 60.0
TASK_ARN_PREFIX = "arn:aws:ecs:"
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks per call
UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


class EcsClient(Protocol):
    """The two ECS calls the launcher makes (a boto3 ECS client satisfies it)."""

    def run_task(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def describe_tasks(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class EcsTarget:
    """Where worker tasks run; from ``FLUXION_ECS_*`` settings."""

    cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    container_name: str = "worker"
    assign_public_ip: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EcsTarget:
        missing = [
            f"FLUXION_ECS_{name.upper()}"
            for name in ("cluster", "task_definition", "subnets")
            if not getattr(settings, f"ecs_{name}")
        ]
        if missing:
            raise LaunchError(
                f"FLUXION_LAUNCHER=ecs needs {', '.join(missing)} "
                "(the CDK app sets them on the service; see docs/deploy/aws.md)"
            )
        return cls(
            cluster=str(settings.ecs_cluster),
            task_definition=str(settings.ecs_task_definition),
            subnets=settings.ecs_subnets,
            security_groups=settings.ecs_security_groups,
            container_name=settings.ecs_container_name,
            assign_public_ip=settings.ecs_assign_public_ip,
        )

    def run_task_request(self, run_id: int) -> dict[str, Any]:
        """The RunTask arguments for one run: the worker command carries the run id."""
        return {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition,
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": f"fluxion-run-{run_id}",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.subnets),
                    "securityGroups": list(self.security_groups),
                    "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {"name": self.container_name, "command": worker_command(run_id)}
                ]
            },
        }


def worker_command(run_id: int) -> list[str]:
    """Arguments after the image's ``fluxion-etl`` entry point."""
    return ["worker", "--run-id", str(run_id)]


class EcsLauncher:
    name = "ecs"
    hands_off_in_process = False  # an ECS RunTask call

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        client: EcsClient,
        target: EcsTarget,
        config: ChainConfig | None = None,
        metrics_out: TextIO | None = None,
    ) -> None:
        self._engine, self._clock, self._client, self._target = engine, clock, client, target
        self._metrics = FreshnessMetrics(config, metrics_out) if config is not None else None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, clock: Clock, boto3_client: EcsClient | None = None
    ) -> EcsLauncher:
        """Build from ``FLUXION_ECS_*``; ``boto3_client`` is the seam for tests (moto)."""
        target = EcsTarget.from_settings(settings)
        client = boto3_client if boto3_client is not None else _boto3_ecs(settings.ecs_region)
        return cls(engine, clock, client=client, target=target, config=load_config(settings.config))

    # --- launch ----------------------------------------------------------------------------

    def launch(self, run_id: int) -> None:
        if self._closed:
            raise LaunchError("the service is shutting down and takes no new runs")
        try:
            task_arn = self._run_task(run_id)
        except LaunchError as exc:
            self._fail_run(run_id, str(exc))
            raise
        with self._engine.begin() as conn:
            ledger.set_external_ref(conn, run_id, task_arn)
        log.info("run handed to ECS", run_id=run_id, task_arn=task_arn)

    def _run_task(self, run_id: int) -> str:
        try:
            answer = self._client.run_task(**self._target.run_task_request(run_id))
        # botocore's ClientError, EndpointConnectionError, NoCredentialsError... all mean "not run"
        except Exception as exc:
            raise LaunchError(f"ECS RunTask failed: {aws_reason(exc)}") from exc
        tasks = answer.get("tasks") or []
        if not tasks:
            raise LaunchError(f"ECS RunTask started no task: {failure_reasons(answer)}")
        return str(tasks[0]["taskArn"])

    def _fail_run(self, run_id: int, message: str) -> None:
        with self._engine.begin() as conn:
            ledger.finish_run(
                conn,
                run_id,
                RunStatus.FAILED,
                now=self._clock.now(),
                error_category=ErrorCategory.LAUNCH.value,
                error_message=message,
            )
        log.error("run launch failed", run_id=run_id, reason=message)

    def holds(self, run_id: int) -> bool:
        """A launched run carries its task's ARN (``external_ref``): never relaunched."""
        return False

    # --- poll ------------------------------------------------------------------------------

    def poll(self) -> None:
        """Settle runs whose task stopped unfinished; publish freshness metrics when due."""
        with self._lock:
            pending = self._unfinished_tasks()
            for batch in _batches(sorted(pending), DESCRIBE_BATCH):
                self._settle_batch(batch, pending)
            if self._metrics is not None:
                self._metrics.maybe_publish(self._engine, self._clock.now())

    def _unfinished_tasks(self) -> dict[str, int]:
        """Task ARN → run id, for every unfinished run handed to ECS."""
        query = select(runs.c.id, runs.c.external_ref).where(
            runs.c.status.in_(UNFINISHED), runs.c.external_ref.like(f"{TASK_ARN_PREFIX}%")
        )
        with self._engine.connect() as conn:
            return {str(row.external_ref): int(row.id) for row in conn.execute(query)}

    def _settle_batch(self, task_arns: list[str], run_of: Mapping[str, int]) -> None:
        try:
            answer = self._client.describe_tasks(cluster=self._target.cluster, tasks=task_arns)
        except Exception as exc:  # ECS unreachable now: the next poll tries again
            log.warning("ECS DescribeTasks failed", reason=aws_reason(exc))
            return
        for task in answer.get("tasks") or []:
            if task.get("lastStatus") != "STOPPED":
                continue
            if self._worker_exit_code(task) == EXIT_NOT_CLAIMED:
                self._forget(run_of[task["taskArn"]], task["taskArn"])
            else:
                self._abandon(run_of[task["taskArn"]], stopped_message(task))
        for failure in answer.get("failures") or []:
            if failure.get("reason") == "MISSING" and failure.get("arn") in run_of:
                self._abandon(run_of[failure["arn"]], "ECS no longer knows its task (MISSING)")

    def _worker_exit_code(self, task: Mapping[str, Any]) -> int | None:
        for container in task.get("containers") or []:
            if container.get("name") == self._target.container_name:
                code = container.get("exitCode")
                return int(code) if code is not None else None
        return None

    def _forget(self, run_id: int, task_arn: str) -> None:
        """A duplicate launch whose worker found the run claimed: the run is alive elsewhere
        (the lease reaper watches it); stop following the stopped task."""
        with self._engine.begin() as conn:
            ledger.clear_external_ref(conn, run_id, task_arn)
        log.info("duplicate ECS task found its run claimed", run_id=run_id, task=task_arn)

    def _abandon(self, run_id: int, message: str) -> None:
        with self._engine.begin() as conn:
            abandoned = leases.abandon_run(conn, run_id, now=self._clock.now(), message=message)
        if abandoned:
            log.warning("ECS task stopped before finishing its run", run_id=run_id, reason=message)

    # --- lifecycle -------------------------------------------------------------------------

    def alive(self) -> bool:
        return not self._closed

    def close(self, grace: float) -> None:
        """ECS tasks are independent of this process: they go on and report into the database."""
        self._closed = True


def stopped_message(task: Mapping[str, Any]) -> str:
    """Why a task stopped, with the worker container's exit code when ECS gives one."""
    reason = task.get("stoppedReason") or task.get("stopCode") or "no reason given"
    codes = [
        f"{c.get('name', '?')} exit code {c['exitCode']}"
        for c in task.get("containers") or []
        if c.get("exitCode") is not None
    ]
    detail = f" ({', '.join(codes)})" if codes else " (no exit code)"
    return f"ECS task stopped before finishing the run: {reason}{detail}"


def failure_reasons(answer: Mapping[str, Any]) -> str:
    failures = answer.get("failures") or []
    parts = [" ".join(str(f[k]) for k in ("reason", "detail", "arn") if f.get(k)) for f in failures]
    return "; ".join(p for p in parts if p) or "no failure reason given"


def aws_reason(exc: BaseException) -> str:
    """AWS's own error code and message when there is one (botocore ``ClientError``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error") or {}
        code, message = error.get("Code"), error.get("Message")
        if code or message:
            return f"{code}: {message}" if code and message else str(code or message)
    return f"{type(exc).__name__}: {exc}"


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _boto3_ecs(region: str | None) -> EcsClient:
    # The AWS extra: only a service running FLUXION_LAUNCHER=ecs needs boto3 (it has no stubs).
    import boto3  # type: ignore[import-untyped]

    client: EcsClient = boto3.client("ecs", region_name=region)
    return client


# --- freshness metrics (CloudWatch embedded metric format) -----------------------------------


class FreshnessMetrics:
    """Per job, the age of the stalest location's last success, as an EMF line on ``out``.

    A job with a configured location that never succeeded publishes nothing: CloudWatch sees
    missing data, which the stale alarm treats as breaching (never-synced data is stale).
    """

    def __init__(
        self,
        config: ChainConfig,
        out: TextIO | None = None,
        *,
        every_seconds: float = METRICS_EVERY_SECONDS,
    ) -> None:
        self._locations = tuple(loc for loc in config.locations if loc.active)
        self._out, self._every = out, every_seconds
        self._last: datetime | None = None

    def maybe_publish(self, engine: Engine, now: datetime) -> dict[str, float] | None:
        if self._last is not None and (now - self._last).total_seconds() < self._every:
            return None
        with engine.connect() as conn:
            states = sync_state.all_states(conn)
        successes = {(s.job.value, s.location_id): s.last_success_at for s in states}
        ages = last_success_ages(self._locations, successes, now)
        for job, age in ages.items():
            self._emit(emf_line(job, age, now))
        self._last = now
        return ages

    def _emit(self, line: str) -> None:
        out = self._out or sys.stdout
        out.write(line + "\n")
        out.flush()


def jobs_for(location: Location) -> tuple[Job, ...]:
    """Jobs whose freshness is watched: inventory everywhere, sales where there is a branch."""
    return (Job.INVENTORY, Job.SALES) if location.has_sales else (Job.INVENTORY,)


def last_success_ages(
    locations: Iterable[Location],
    successes: Mapping[tuple[str, str], datetime | None],
    now: datetime,
) -> dict[str, float]:
    """Job → seconds since the stalest location's last success; jobs with a never-synced location
    are left out (missing data)."""
    oldest: dict[str, datetime] = {}
    never: set[str] = set()
    for location in locations:
        for job in jobs_for(location):
            last = successes.get((job.value, location.id))
            if last is None:
                never.add(job.value)
            elif job.value not in oldest or last < oldest[job.value]:
                oldest[job.value] = last
    return {
        job: max(0.0, (now - last).total_seconds())
        for job, last in sorted(oldest.items())
        if job not in never
    }


def emf_line(job: str, age_seconds: float, now: datetime) -> str:
    """One CloudWatch embedded-metric-format record: a log line CloudWatch turns into a metric."""
    record = {
        "_aws": {
            "Timestamp": int(now.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [["Job"]],
                    "Metrics": [{"Name": LAST_SUCCESS_AGE_METRIC, "Unit": "Seconds"}],
                }
            ],
        },
        "Job": job,
        LAST_SUCCESS_AGE_METRIC: round(age_seconds, 1),
    }
    return json.dumps(record, separators=(",", ":"))
