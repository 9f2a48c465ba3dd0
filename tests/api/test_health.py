"""Health checks: /healthz answers while the process lives; /readyz names what is not ready; work
routes answer 503 (not 500) while the database cannot be reached."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from api_support import NOW, Api, FakeLauncher, make_services
from sqlalchemy import Engine

from fluxion_etl.api.app import create_app
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.store.db import create_db_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def client_over(engine: Engine, **services: object) -> TestClient:
    context = make_services(engine, ManualClock(NOW), FakeLauncher())
    for name, value in services.items():
        setattr(context, name, value)
    return TestClient(create_app(context.settings, services=context))


def test_a_ready_service_passes_every_check(api: Api) -> None:
    answer = api.client.get("/readyz")

    assert answer.status_code == 200
    assert answer.json() == {
        "ready": True,
        "checks": {"database": "ok", "migrations": "ok", "launcher": "ok"},
    }
    assert api.client.get("/healthz").json() == {"status": "alive"}


def test_a_dead_launcher_or_scheduler_makes_the_service_unready(api: Api) -> None:
    api.launcher.is_alive = False
    api.services.scheduler_alive = lambda: False

    answer = api.client.get("/readyz")

    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert (checks["launcher"], checks["scheduler"]) == ("not alive", "not alive")


def test_a_scheduler_probe_that_raises_counts_as_not_alive(api: Api) -> None:
    def broken() -> bool:
        raise RuntimeError("loop died")

    api.services.scheduler_alive = broken

    assert api.client.get("/readyz").json()["checks"]["scheduler"] == "not alive"


def test_a_database_without_the_schema_is_unready_and_says_how_to_fix_it(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        answer = client_over(engine).get("/readyz")
    finally:
        engine.dispose()

    assert answer.status_code == 503
    assert "fluxion-etl db upgrade" in answer.json()["checks"]["migrations"]


@pytest.fixture
def unreachable() -> Engine:
    """PostgreSQL on a port nobody listens on: connections are refused at once."""
    return create_db_engine("postgresql+psycopg://nobody@127.0.0.1:9/nothing")


def test_an_unreachable_database_leaves_healthz_alive_and_readyz_503(unreachable: Engine) -> None:
    client = client_over(unreachable)

    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unreachable")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/etl/runs"), ("POST", "/api/etl/sync"), ("GET", "/api/etl/freshness")],
)
def test_work_routes_answer_503_with_a_clear_body_when_the_database_is_down(
    unreachable: Engine, method: str, path: str
) -> None:
    client = client_over(unreachable)

    answer = client.request(method, path, headers={"Authorization": "Bearer flx_whatever"})

    assert answer.status_code == 503
    body = answer.json()
    assert body["success"] is False
    assert "database" in body["message"]
    assert "nobody@" not in answer.text  # no connection details leak
