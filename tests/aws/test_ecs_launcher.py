"""The ECS launcher against moto's ECS: RunTask call, task ARN, launch failures, stopped tasks."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_fakes import EcsWorld
from sqlalchemy import Engine

from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.launchers import EXIT_NOT_CLAIMED, LaunchError
from fluxion_etl.launchers.ecs import (
    LAST_SUCCESS_AGE_METRIC,
    METRIC_NAMESPACE,
    EcsLauncher,
    EcsTarget,
    FreshnessMetrics,
)
from fluxion_etl.settings import load_settings
from fluxion_etl.store import leases, ledger, sync_state

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def _queue(engine: Engine, job: Job = Job.INVENTORY) -> int:
    with engine.begin() as conn:
        return ledger.create_run(conn, RunRequest(job, Trigger.API), now=NOW, launcher="ecs").run_id


def _run(engine: Engine, run_id: int) -> ledger.RunRow:
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    return run


def _target(world: EcsWorld, **overrides: Any) -> EcsTarget:
    values: dict[str, Any] = {
        "cluster": world.cluster,
        "task_definition": world.family,
        "subnets": (world.subnet,),
        "security_groups": (world.security_group,),
    }
    return EcsTarget(**{**values, **overrides})


def _launcher(engine: Engine, world: EcsWorld, clock: ManualClock, **target: Any) -> EcsLauncher:
    return EcsLauncher(engine, clock, client=world.client, target=_target(world, **target))


def _task(world: EcsWorld, arn: str) -> Mapping[str, Any]:
    return world.client.describe_tasks(cluster=world.cluster, tasks=[arn])["tasks"][0]


def test_launch_runs_the_worker_task_with_the_run_id_and_stores_its_arn(
    engine: Engine, ecs_world: EcsWorld
) -> None:
    run_id = _queue(engine)
    _launcher(engine, ecs_world, ManualClock(NOW)).launch(run_id)

    run = _run(engine, run_id)
    assert run.external_ref is not None
    assert run.external_ref.startswith("arn:aws:ecs:us-east-1:")
    assert run.status is RunStatus.QUEUED  # the worker claims it, not the launcher
    task = _task(ecs_world, run.external_ref)
    assert task["overrides"]["containerOverrides"] == [
        {"name": "worker", "command": ["worker", "--run-id", str(run_id)]}
    ]
    assert task["taskDefinitionArn"].endswith(":task-definition/fluxion-worker:1")
    assert task["launchType"] == "FARGATE"
    assert task["startedBy"] == f"fluxion-run-{run_id}"


def test_from_settings_reads_the_fluxion_ecs_settings(
    sqlite_engine: Engine, ecs_world: EcsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUXION_ECS_CLUSTER", ecs_world.cluster)
    monkeypatch.setenv("FLUXION_ECS_TASK_DEFINITION", ecs_world.family)
    monkeypatch.setenv("FLUXION_ECS_SUBNETS", f" {ecs_world.subnet} ,")
    monkeypatch.setenv("FLUXION_ECS_SECURITY_GROUPS", ecs_world.security_group)
    launcher = EcsLauncher.from_settings(
        load_settings(), sqlite_engine, ManualClock(NOW), boto3_client=ecs_world.client
    )
    run_id = _queue(sqlite_engine)
    launcher.launch(run_id)

    task = _task(ecs_world, str(_run(sqlite_engine, run_id).external_ref))
    assert task["lastStatus"] == "RUNNING"
    assert task["attachments"][0]["details"][0] == {"name": "subnetId", "value": ecs_world.subnet}


def test_missing_ecs_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUXION_ECS_CLUSTER", raising=False)
    monkeypatch.setenv("FLUXION_ECS_TASK_DEFINITION", "fluxion-worker")
    with pytest.raises(LaunchError, match="FLUXION_ECS_CLUSTER, FLUXION_ECS_SUBNETS"):
        EcsTarget.from_settings(load_settings())


def test_a_run_task_error_fails_the_run_with_category_launch_and_aws_reason(
    engine: Engine, ecs_world: EcsWorld
) -> None:
    run_id = _queue(engine)
    launcher = _launcher(engine, ecs_world, ManualClock(NOW), cluster="no-such-cluster")

    with pytest.raises(LaunchError, match="ClusterNotFoundException"):
        launcher.launch(run_id)

    run = _run(engine, run_id)
    assert run.status is RunStatus.FAILED
    assert run.error_category is not None
    assert run.error_category.value == "launch"
    assert run.error_message == "ECS RunTask failed: ClusterNotFoundException: Cluster not found."
    assert run.external_ref is None


class _NoCapacity:
    """RunTask answering as AWS does when Fargate has no capacity: no task, a failures entry."""

    def run_task(self, **kwargs: Any) -> Mapping[str, Any]:
        return {
            "tasks": [],
            "failures": [
                {
                    "arn": "arn:aws:ecs:us-east-1:1:cluster/fluxion",
                    "reason": "Capacity is unavailable at this time.",
                }
            ],
        }

    def describe_tasks(self, **kwargs: Any) -> Mapping[str, Any]:
        return {"tasks": [], "failures": []}


def test_a_run_task_failures_entry_fails_the_run_with_its_reason(
    sqlite_engine: Engine, ecs_world: EcsWorld
) -> None:
    run_id = _queue(sqlite_engine)
    launcher = EcsLauncher(
        sqlite_engine, ManualClock(NOW), client=_NoCapacity(), target=_target(ecs_world)
    )

    with pytest.raises(LaunchError, match="Capacity is unavailable"):
        launcher.launch(run_id)

    run = _run(sqlite_engine, run_id)
    assert (run.status, run.error_category) == (RunStatus.FAILED, "launch")
    assert "Capacity is unavailable at this time." in str(run.error_message)


def test_a_task_stopped_before_its_run_finished_makes_the_run_abandoned(
    engine: Engine, ecs_world: EcsWorld
) -> None:
    clock = ManualClock(NOW)
    launcher = _launcher(engine, ecs_world, clock)
    run_id = _queue(engine)
    launcher.launch(run_id)
    with engine.begin() as conn:  # the worker claimed the run and took a location's lease
        ledger.claim_run(conn, run_id, owner="task", now=NOW, deadline_at=NOW + timedelta(hours=1))
        leases.try_acquire(
            conn,
            job="inventory",
            location_id="tienda_01",
            run_id=run_id,
            owner="task",
            now=NOW,
            ttl=timedelta(minutes=2),
        )
        ledger.create_items(conn, run_id, ["tienda_01"])
    arn = str(_run(engine, run_id).external_ref)

    launcher.poll()
    assert _run(engine, run_id).status is RunStatus.RUNNING  # still running: left alone

    ecs_world.client.stop_task(cluster=ecs_world.cluster, task=arn, reason="OutOfMemoryError")
    clock.advance(30)
    launcher.poll()

    run = _run(engine, run_id)
    assert (run.status, run.error_category) == (RunStatus.ABANDONED, "worker_lost")
    assert run.error_message == (
        "ECS task stopped before finishing the run: OutOfMemoryError (worker exit code 0)"
    )
    with engine.connect() as conn:
        (item,) = ledger.get_items(conn, run_id)
    assert (item.status, item.error_category, item.error_message) == (
        ItemStatus.FAILED,
        "worker_lost",
        run.error_message,
    )
    assert run.finished_at == NOW + timedelta(seconds=30)
    with engine.connect() as conn:
        assert leases.holder(conn, "inventory", "tienda_01") is None


def test_a_task_stopped_after_its_run_finished_leaves_the_run_alone(
    sqlite_engine: Engine, ecs_world: EcsWorld
) -> None:
    launcher = _launcher(sqlite_engine, ecs_world, ManualClock(NOW))
    run_id = _queue(sqlite_engine)
    launcher.launch(run_id)
    with sqlite_engine.begin() as conn:
        ledger.claim_run(conn, run_id, owner="task", now=NOW, deadline_at=NOW + timedelta(hours=1))
        ledger.finish_run(conn, run_id, RunStatus.SUCCEEDED, now=NOW)
    arn = str(_run(sqlite_engine, run_id).external_ref)
    ecs_world.client.stop_task(
        cluster=ecs_world.cluster, task=arn, reason="Essential container exited"
    )

    launcher.poll()

    run = _run(sqlite_engine, run_id)
    assert (run.status, run.error_message) == (RunStatus.SUCCEEDED, None)


class _Forgetful(_NoCapacity):
    """DescribeTasks as AWS answers it for a task stopped long ago: MISSING."""

    def describe_tasks(self, **kwargs: Any) -> Mapping[str, Any]:
        return {
            "tasks": [],
            "failures": [{"arn": arn, "reason": "MISSING"} for arn in kwargs["tasks"]],
        }


def test_a_task_ecs_no_longer_knows_abandons_its_unfinished_run(
    sqlite_engine: Engine, ecs_world: EcsWorld
) -> None:
    run_id = _queue(sqlite_engine)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/fluxion/0123456789abcdef"
    with sqlite_engine.begin() as conn:
        ledger.set_external_ref(conn, run_id, arn)
    EcsLauncher(
        sqlite_engine, ManualClock(NOW), client=_Forgetful(), target=_target(ecs_world)
    ).poll()

    run = _run(sqlite_engine, run_id)
    assert (run.status, run.error_message) == (
        RunStatus.ABANDONED,
        "ECS no longer knows its task (MISSING)",
    )


class _LostTheClaim(_NoCapacity):
    """DescribeTasks for a duplicate task whose worker found the run claimed (exit code 3)."""

    def describe_tasks(self, **kwargs: Any) -> Mapping[str, Any]:
        return {
            "tasks": [
                {
                    "taskArn": arn,
                    "lastStatus": "STOPPED",
                    "stoppedReason": "Essential container in task exited",
                    "containers": [{"name": "worker", "exitCode": EXIT_NOT_CLAIMED}],
                }
                for arn in kwargs["tasks"]
            ],
            "failures": [],
        }


def test_a_duplicate_task_that_found_its_run_claimed_leaves_the_running_run_alone(
    sqlite_engine: Engine, ecs_world: EcsWorld
) -> None:
    run_id = _queue(sqlite_engine)
    arn = "arn:aws:ecs:us-east-1:123456789012:task/fluxion/duplicate"
    with sqlite_engine.begin() as conn:  # the first task's worker claimed it; a second launch
        ledger.claim_run(
            conn, run_id, owner="task-1", now=NOW, deadline_at=NOW + timedelta(hours=1)
        )
        ledger.set_external_ref(conn, run_id, arn)
    launcher = EcsLauncher(
        sqlite_engine, ManualClock(NOW), client=_LostTheClaim(), target=_target(ecs_world)
    )
    launcher.poll()
    launcher.poll()

    run = _run(sqlite_engine, run_id)
    assert (run.status, run.owner, run.external_ref) == (RunStatus.RUNNING, "task-1", None)


# --- freshness metrics -----------------------------------------------------------------------


def _emf(out: io.StringIO) -> dict[str, float]:
    values = {}
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == METRIC_NAMESPACE
        assert directive["Dimensions"] == [["Job"]]
        values[record["Job"]] = record[LAST_SUCCESS_AGE_METRIC]
    return values


def test_freshness_metrics_publish_the_stalest_locations_age_per_job(sqlite_engine: Engine) -> None:
    config = load_config(None)
    stores = [loc for loc in config.locations if loc.has_sales]
    with sqlite_engine.begin() as conn:
        for i, loc in enumerate(config.locations):
            sync_state.record_success(
                conn,
                job="inventory",
                location_id=loc.id,
                run_id=1,
                now=NOW - timedelta(minutes=10 + i),
            )
        for loc in stores[1:]:  # one store never synced its sales
            sync_state.record_success(
                conn, job="sales", location_id=loc.id, run_id=1, now=NOW - timedelta(minutes=5)
            )
    out = io.StringIO()
    metrics = FreshnessMetrics(config, out, every_seconds=60)

    metrics.maybe_publish(sqlite_engine, NOW)
    oldest = 10 + len(config.locations) - 1
    assert _emf(out) == {"inventory": oldest * 60.0}  # sales: missing data, so the alarm fires

    assert metrics.maybe_publish(sqlite_engine, NOW + timedelta(seconds=30)) is None  # not due yet
    assert metrics.maybe_publish(sqlite_engine, NOW + timedelta(seconds=60)) == {
        "inventory": oldest * 60.0 + 60
    }
