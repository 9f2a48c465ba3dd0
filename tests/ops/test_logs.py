"""Run logs: every line of a run names its run, job and location (JSON in production), and a run
executed by a subprocess worker can be read through the API after the worker exited."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import structlog
from ops_support import TODAY, NullLauncher, local, run_row, simulated_chain
from sqlalchemy import Engine

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.klk.client import RequestEvent
from fluxion_etl.launchers.subprocess import SubprocessLauncher
from fluxion_etl.logs import configure_logging
from fluxion_etl.store import tokens

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_a_subprocess_workers_log_is_read_through_the_api_after_it_exited(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine  # the process boundary is the point here, not the dialect
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        env = chain.worker_env(tmp_path)
        launcher = SubprocessLauncher(engine, chain.clock, env=env)
        request = RunRequest(job=Job.INVENTORY, trigger=Trigger.API, requested_by="test")
        run_id = submit(
            engine, request, config=chain.config, settings=chain.settings, clock=chain.clock
        ).run_id
        launcher.launch(run_id)
        launcher.close(grace=60)  # waits for the worker process to exit
        assert run_row(engine, run_id).external_ref.startswith("pid:")  # type: ignore[union-attr]

        answer = read_logs(engine, chain, run_id)

    assert answer["run_status"] == RunStatus.SUCCEEDED.value
    assert answer["finished"] is True
    events = [(line["event"], line["location_id"]) for line in answer["lines"]]
    assert events[0] == ("run started", None)
    assert events[-1] == ("run finished", None)
    for store in ("tienda_01", "tienda_02", "tienda_03"):
        assert ("location started", store) in events
        assert ("inventory loaded", store) in events
    loaded = next(line for line in answer["lines"] if line["event"] == "inventory loaded")
    assert loaded["fields"]["fetched"] == 50


def read_logs(engine: Engine, chain: object, run_id: int) -> dict[str, object]:
    """``GET /api/etl/runs/{id}/logs`` from a fresh API process-side context."""
    services = ServiceContext(
        settings=chain.settings,  # type: ignore[attr-defined]
        config=chain.config,  # type: ignore[attr-defined]
        engine=engine,
        launcher=NullLauncher(),
        clock=chain.clock,  # type: ignore[attr-defined]
    )
    with engine.begin() as conn:
        secret = tokens.create_token(
            conn, name="reader", scope=tokens.Scope.READ, now=services.clock.now()
        ).secret
    with TestClient(create_app(services.settings, services=services)) as client:
        answer = client.get(
            f"/api/etl/runs/{run_id}/logs", headers={"Authorization": f"Bearer {secret}"}
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_every_json_line_of_a_run_names_its_run_job_and_location(
    sqlite_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = structlog.get_logger("test.klk")

    def log_request(event: RequestEvent) -> None:  # logged from the runner's worker threads
        extra.info("klk request", call=event.call)

    configure_logging("json")  # here: pytest swaps the captured stream between phases
    try:
        with simulated_chain(sqlite_engine, start=local(TODAY, 10)) as chain:
            chain.on_request = log_request
            run = chain.run(Job.SALES)
    finally:
        structlog.reset_defaults()

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    of_run = [line for line in lines if line.get("run_id") == run.id]
    requests = [line for line in of_run if line["event"] == "klk request"]
    assert len(requests) == 6  # yesterday and today for each of three stores
    assert {(r["job"], r["location_id"]) for r in requests} == {
        ("sales", store) for store in ("tienda_01", "tienda_02", "tienda_03")
    }
    assert all({"timestamp", "level", "event", "job"} <= set(line) for line in of_run)
