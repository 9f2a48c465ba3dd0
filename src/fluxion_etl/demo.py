"""``fluxion-etl demo``: the whole product on one machine with nothing configured.

A KLK simulator in-process (the chain's 20 locations), a SQLite database in the working directory,
the service (API, launcher, embedded scheduler) on 127.0.0.1, a first inventory and sales sync at
once, and an admin token printed for the person trying it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import SystemClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.service import Service
from fluxion_etl.settings import load_settings
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld
from fluxion_etl.store import tokens
from fluxion_etl.store.db import create_db_engine, upgrade

DEMO_DB = "fluxion-demo.db"


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    directory: Path = Path()
    skus: int = 4000
    lines_per_day: int = 2000
    seed: int = 1


def banner(url: str, token: str, db_path: Path) -> str:
    auth = f"-H 'Authorization: Bearer {token}'"
    return f"""
fluxion-etl demo is running.

  API and OpenAPI docs:  {url}/docs
  database:              {db_path}
  admin token:           {token}
    (shown once; the database keeps only its hash)

A first inventory and sales sync has started. Try:

  curl -s {auth} {url}/api/etl/runs | python3 -m json.tool
  curl -s {auth} {url}/api/etl/freshness | python3 -m json.tool
  curl -s -X POST {auth} -H 'Content-Type: application/json' \\
       -d '{{"ubicacion_id": "tienda_01"}}' {url}/api/etl/sync

Press Ctrl+C to stop.
"""


Serve = Callable[[Service, str, int, Callable[[str], None]], None]


def run_demo(options: DemoOptions, *, serve: Serve) -> None:
    """``serve(service, host, port, on_ready)`` runs the HTTP server until interrupted."""
    clock = SystemClock()
    world = SimWorld(
        locations=20,
        skus=options.skus,
        lines_per_day=options.lines_per_day,
        seed=options.seed,
        clock=clock,
    )
    db_path = (options.directory / DEMO_DB).resolve()
    with running_simulator(world) as klk_url:
        settings = load_settings(database_url=f"sqlite:///{db_path}", klk_base_url=klk_url)
        config = load_config(None)
        engine = create_db_engine(settings.database_url)
        upgrade(engine)
        with engine.begin() as conn:
            name = f"demo-admin-{clock.now():%Y%m%d%H%M%S}"
            created = tokens.create_token(
                conn, name=name, scope=tokens.Scope.ADMIN, now=clock.now()
            )
        engine.dispose()
        service = Service.open(settings, config, clock)
        service.start()

        def first_sync() -> None:
            for job in (Job.INVENTORY, Job.SALES):
                request = RunRequest(job=job, trigger=Trigger.CLI, requested_by="demo")
                result = submit(
                    service.rt.engine,
                    request,
                    config=config,
                    settings=settings,
                    clock=clock,
                    launcher=service.launcher.name,
                )
                service.launch(result.run_id)

        def on_ready(url: str) -> None:
            first_sync()
            print(banner(url, created.secret, db_path), flush=True)

        try:
            serve(service, "127.0.0.1", options.port, on_ready)
        finally:
            service.stop(grace=10)
