"""The whole AWS chain on one machine: the trigger function (a boto3-only Python, as in Lambda)
invoked with Scheduler-shaped events, the real API on loopback with ``FLUXION_SCHEDULER=external``
semantics, and the ECS launcher handing runs to moto's ECS (AWS cannot be had)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aws_fakes import EcsWorld
from sqlalchemy import Engine, func, select
from trigger_fakes import (
    SECRET_ARN,
    fake_secrets_manager,
    fire_event,
    invoke,
    make_boto3_only_venv,
    served_on_loopback,
)

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.states import FireOutcome, Trigger
from fluxion_etl.launchers.ecs import EcsLauncher, EcsTarget
from fluxion_etl.settings import Settings
from fluxion_etl.store import ledger, schedules, tokens
from fluxion_etl.store.schema import runs

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)  # Monday 10:00 in Caracas
AT = "2026-01-05T14:00:00Z"  # how EventBridge Scheduler writes <aws.scheduler.scheduled-time>
AT_SALES = "2026-01-05T13:35:00Z"  # the sales schedule fires at :05 and :35


@dataclass
class Chain:
    python: Path
    service_url: str
    secrets_url: str
    engine: Engine
    world: EcsWorld

    def fire(self, *events: dict[str, object]) -> list[dict[str, object]]:
        return invoke(
            self.python, list(events), service_url=self.service_url, secrets_url=self.secrets_url
        )

    def runs(self) -> list[ledger.RunRow]:
        with self.engine.connect() as conn:
            return ledger.list_runs(conn)

    def fire_row(self, name: str) -> schedules.FireRow | None:
        at = datetime.fromisoformat(AT_SALES if name == "sales" else AT)
        with self.engine.connect() as conn:
            return schedules.get_fire(conn, name, at)


@pytest.fixture(scope="module")
def boto3_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_boto3_only_venv(tmp_path_factory.mktemp("lambda-venv"))


@pytest.fixture
def chain(sqlite_engine: Engine, ecs_world: EcsWorld, boto3_python: Path) -> Iterator[Chain]:
    settings = Settings(scheduler="external", launcher="ecs")
    config = load_config(None)
    clock = ManualClock(NOW)
    with sqlite_engine.begin() as conn:
        schedules.seed_schedules(conn, schedules.definitions_from_config(config), NOW)
        token = tokens.create_token(
            conn, name="eventbridge", scope=tokens.Scope("trigger"), now=NOW
        ).secret
    target = EcsTarget(
        cluster=ecs_world.cluster,
        task_definition=ecs_world.family,
        subnets=(ecs_world.subnet,),
        security_groups=(ecs_world.security_group,),
    )
    launcher = EcsLauncher(sqlite_engine, clock, client=ecs_world.client, target=target)
    services = ServiceContext(
        settings=settings, config=config, engine=sqlite_engine, launcher=launcher, clock=clock
    )
    with (
        fake_secrets_manager({SECRET_ARN: token}) as secrets,
        served_on_loopback(create_app(settings, services=services)) as url,
    ):
        yield Chain(boto3_python, url, secrets.url, sqlite_engine, ecs_world)


def test_a_fire_starts_a_run_on_ecs(chain: Chain) -> None:
    (result,) = chain.fire(fire_event("inventory", "inventory", AT))

    assert result["ok"]["http_status"] == 202
    (run,) = chain.runs()
    assert result["ok"]["run_id"] == run.id
    assert (run.trigger, run.schedule_name, run.scheduled_for) == (
        Trigger.SCHEDULE,
        "inventory",
        NOW,
    )
    assert run.external_ref is not None
    task = chain.world.client.describe_tasks(cluster=chain.world.cluster, tasks=[run.external_ref])
    overrides = task["tasks"][0]["overrides"]["containerOverrides"][0]
    assert overrides["command"] == ["worker", "--run-id", str(run.id)]
    fire = chain.fire_row("inventory")
    assert fire is not None
    assert (fire.outcome, fire.run_id) == (FireOutcome.STARTED, run.id)


def test_the_same_fire_delivered_twice_is_one_run(chain: Chain) -> None:
    first, again = chain.fire(
        fire_event("sales", "sales", AT_SALES), fire_event("sales", "sales", AT_SALES)
    )

    assert first["ok"]["http_status"] == 202
    assert again["ok"]["http_status"] == 200
    assert again["ok"]["status"] == FireOutcome.DUPLICATE.value
    assert again["ok"]["run_id"] == first["ok"]["run_id"]
    assert len(chain.runs()) == 1


def test_a_fire_of_a_disabled_schedule_succeeds_with_the_skip_recorded(chain: Chain) -> None:
    with chain.engine.begin() as conn:
        schedules.update_schedule(conn, "sales", enabled=False, by="ana", now=NOW, mode="external")

    (result,) = chain.fire(fire_event("sales", "sales", AT_SALES))

    assert result["ok"]["status"] == FireOutcome.SKIPPED_DISABLED.value
    assert chain.runs() == []
    fire = chain.fire_row("sales")
    assert fire is not None
    assert fire.outcome is FireOutcome.SKIPPED_DISABLED


def test_a_fire_with_a_wrong_token_raises_with_the_services_answer(chain: Chain) -> None:
    with chain.engine.begin() as conn:
        tokens.revoke_token(conn, "eventbridge", now=NOW)

    (result,) = chain.fire(fire_event("inventory", "inventory", AT))

    assert result["error"] == "TriggerRejected"
    assert "401" in str(result["message"])
    with chain.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0
