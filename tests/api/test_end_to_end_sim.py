"""The SPEC §6 calls, as callers in the field send them, with a token added, over a real server on
loopback: they start runs that complete against the KLK simulator (inline launcher, real runner),
and the answers carry every field SPEC §6 names. Without a token: 401; with ``read``: 403."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from api_support import make_tokens, served_on_loopback
from sqlalchemy import Engine

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.launchers.inline import InlineLauncher
from fluxion_etl.settings import Settings
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld

# Monday 19:00 in Caracas: the simulated stores have sold most of the day's lines.
EVENING = datetime(2025, 11, 17, 19, 0, tzinfo=ZoneInfo("America/Caracas"))
JSON = {"Content-Type": "application/json"}


@dataclass
class Service:
    url: str
    secrets: dict[str, str]

    def post(self, path: str, body: bytes, scope: str | None) -> httpx.Response:
        auth = {} if scope is None else {"Authorization": f"Bearer {self.secrets[scope]}"}
        return httpx.post(self.url + path, content=body, headers={**JSON, **auth}, timeout=30)

    def wait_for(self, run_id: int, timeout: float = 60) -> dict[str, object]:
        auth = {"Authorization": f"Bearer {self.secrets['read']}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = httpx.get(f"{self.url}/api/etl/runs/{run_id}", headers=auth, timeout=10).json()
            if run["status"] not in ("queued", "running"):
                return dict(run)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.fixture
def service(engine: Engine) -> Iterator[Service]:
    """KLK simulator + the API with the inline launcher over the real runner, on loopback."""
    clock = ManualClock(EVENING)
    world = SimWorld(locations=20, skus=300, lines_per_day=100, seed=1, clock=clock)
    with running_simulator(world, None) as klk_url:
        settings = Settings(klk_base_url=klk_url)
        config = load_config(None)
        with KlkClient.from_settings(settings) as klk:
            runtime = Runtime(settings=settings, config=config, engine=engine, klk=klk, clock=clock)
            launcher = InlineLauncher(runtime)
            services = ServiceContext(
                settings=settings, config=config, engine=engine, launcher=launcher, clock=clock
            )
            try:
                with served_on_loopback(create_app(settings, services=services)) as url:
                    yield Service(url, make_tokens(engine, clock.now()))
            finally:
                launcher.close(grace=30)


def test_the_field_calls_with_a_token_start_runs_that_complete(service: Service) -> None:
    inventory = service.post("/api/etl/sync", b'{"ubicacion_id": null}', "trigger")
    sales = service.post(
        "/api/etl/sync/ventas",
        b'{"ubicacion_id": null, "fecha_inicio": "2025-11-16", "fecha_fin": "2025-11-17"}',
        "trigger",
    )

    assert (inventory.status_code, sales.status_code) == (202, 202)
    for answer in (inventory.json(), sales.json()):
        assert answer["success"] is True
        assert answer["status"] == "running"
        assert answer["ubicacion_id"] is None
        assert answer["message"]
    assert (sales.json()["fecha_inicio"], sales.json()["fecha_fin"]) == ("2025-11-16", "2025-11-17")
    for answer in (inventory.json(), sales.json()):
        run = service.wait_for(answer["run_id"])
        assert run["status"] == "succeeded", run["error_message"]
        assert run["totals"]["inserted"] > 0  # type: ignore[index]


def test_the_field_calls_without_a_token_or_with_a_read_token_are_refused(
    service: Service,
) -> None:
    for path, body in (
        ("/api/etl/sync", b'{"ubicacion_id": null}'),
        ("/api/etl/sync/ventas", b'{"ubicacion_id": "tienda_01", "fecha_inicio": "2025-11-16"}'),
    ):
        assert service.post(path, body, None).status_code == 401
        assert service.post(path, body, "read").status_code == 403
