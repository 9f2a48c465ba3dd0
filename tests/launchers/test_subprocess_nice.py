"""The subprocess launcher starts its workers nicer than the serve process (both dialects).

A burst of API calls starts several worker processes at once on the cores that answer the calls;
at a lower priority they leave those cores to the API first. The runs themselves are unchanged:
each worker still claims and executes its run once and exits, and the launcher still reaps it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ops_support import TODAY, local, run_row, simulated_chain
from sqlalchemy import Engine, func, select

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.errors import ConfigError
from fluxion_etl.launchers.subprocess import SubprocessLauncher
from fluxion_etl.service import Service
from fluxion_etl.settings import load_settings
from fluxion_etl.sim.topology import chain_config_toml
from fluxion_etl.store import schema


@pytest.mark.parametrize("steps", [7, 0])
def test_a_served_worker_runs_the_set_steps_nicer_than_serve_and_its_run_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        config_file = tmp_path / "chain.toml"
        config_file.write_text(chain_config_toml(chain.world.locations), "utf-8")
        # As `serve` gets them: the worker process reads the same environment.
        for name, value in {
            "DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "KLK_BASE_URL": chain.url,
            "CONFIG": str(config_file),
            "LOG_FORMAT": "json",
            "CLOCK": "system",
            "LAUNCHER": "subprocess",
            "SUBPROCESS_WORKER_NICE": str(steps),
        }.items():
            monkeypatch.setenv(f"FLUXION_{name}", value)
        service = Service.open(load_settings(), chain.config, chain.clock)
        assert isinstance(service.launcher, SubprocessLauncher)
        request = RunRequest(job=Job.INVENTORY, trigger=Trigger.API, requested_by="test")
        run_id = submit(
            engine, request, config=chain.config, settings=chain.settings, clock=chain.clock
        ).run_id
        try:
            service.launch(run_id)
            ref = run_row(engine, run_id).external_ref
            assert ref is not None
            # Not yet reaped (only poll and close reap), so the pid is still this worker's.
            worker_nice = os.getpriority(os.PRIO_PROCESS, int(ref.removeprefix("pid:")))
        finally:
            service.stop(grace=60)  # waits for the worker process to exit, then reaps it

        assert worker_nice == min(os.getpriority(os.PRIO_PROCESS, 0) + steps, 19)  # 19: lowest
        assert run_row(engine, run_id).status == RunStatus.SUCCEEDED
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(schema.runs)) == 1


def test_a_worker_nice_beyond_the_lowest_priority_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLUXION_SUBPROCESS_WORKER_NICE", raising=False)
    with pytest.raises(ConfigError, match="FLUXION_SUBPROCESS_WORKER_NICE"):
        load_settings(subprocess_worker_nice=20)
    assert load_settings().subprocess_worker_nice == 10
