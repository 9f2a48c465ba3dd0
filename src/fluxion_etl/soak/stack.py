"""Everything one soak runs on, brought up in order and torn down whatever happens.

    own PostgreSQL cluster -> schema + commit-fault trigger -> trigger token (the CLI)
    -> simulated time (published in a file, standing still) -> KLK simulator and two ``serve``
    processes started together on it -> time released once every process answers

On the way out: the services and the simulator are stopped, any process still carrying this
soak's marker is killed by pid, and the cluster is stopped and removed. The work directory (logs
of every process, the configuration) is kept when asked or when the soak failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, case, func, or_, select

from fluxion_etl.config import ChainConfig, load_config
from fluxion_etl.sim.topology import build_locations, chain_config_toml
from fluxion_etl.soak.cluster import PgCluster, install_commit_fault, own_cluster
from fluxion_etl.soak.modes import SoakMode
from fluxion_etl.soak.procs import (
    MARKER_ENV,
    ServeProcess,
    Simulator,
    kill_marked,
    launch_simulator,
    serve_processes,
)
from fluxion_etl.soak.timekeeper import Backlog, Timekeeper
from fluxion_etl.soak.triggers import Api
from fluxion_etl.soak.truth import SimControl
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.schema import runs

STARTUP_TIMEOUT = 180.0  # real seconds: a loaded 2-core machine starts Python slowly
KLK_READ_TIMEOUT = 3.0  # real seconds; a hang lasts HANG_FACTOR times as long
HANG_FACTOR = 3
HEARTBEAT_REAL = 1.0  # real seconds between a worker's heartbeats at full speed


@dataclass
class Stack:
    workdir: Path
    cluster: PgCluster
    db: Engine  # AUTOCOMMIT, for the soak's own polling and faults
    clock: Timekeeper
    sim: Simulator
    sim_control: SimControl
    serves: list[ServeProcess]
    api: Api
    config: ChainConfig
    marker: str
    env: dict[str, str]
    keep_workdir: bool = False  # set when the soak failed: its logs are worth reading


def service_env(
    mode: SoakMode, speed: float, *, database_url: str, config_path: Path, marker: str
) -> dict[str, str]:
    """Settings of both services and their workers. Leases, heartbeats and deadlines are in
    simulated seconds, so they are given as real seconds times the speed; KLK timeouts are real."""

    def simulated(real_seconds: float) -> str:
        return f"{real_seconds * speed:.0f}"

    return {
        **os.environ,
        MARKER_ENV: marker,
        "FLUXION_DATABASE_URL": database_url,
        "FLUXION_CONFIG": str(config_path),
        "FLUXION_LAUNCHER": "subprocess",
        "FLUXION_SCHEDULER": "embedded",
        "FLUXION_LOG_FORMAT": "json",
        "FLUXION_LEASE_TTL_SECONDS": simulated(10),
        "FLUXION_HEARTBEAT_SECONDS": simulated(HEARTBEAT_REAL),
        "FLUXION_INVENTORY_DEADLINE_SECONDS": simulated(60),
        "FLUXION_SALES_DEADLINE_SECONDS": simulated(60),
        "FLUXION_RECONCILE_DEADLINE_SECONDS": simulated(180),
        "FLUXION_ALERTS_INTERVAL_SECONDS": simulated(2),
        "FLUXION_KLK_CONNECT_TIMEOUT": "2",
        "FLUXION_KLK_CATALOGUE_READ_TIMEOUT": f"{KLK_READ_TIMEOUT:g}",
        "FLUXION_KLK_SALES_READ_TIMEOUT": f"{KLK_READ_TIMEOUT:g}",
        "FLUXION_KLK_RETRY_ATTEMPTS": "3",
        "FLUXION_KLK_RETRY_INITIAL_WAIT": "0.2",
        "FLUXION_KLK_RETRY_MAX_WAIT": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",  # a process that crashes in C code leaves its Python stacks
    }


def write_config(mode: SoakMode, locations: int, path: Path) -> ChainConfig:
    """The simulator's first ``locations`` locations and the mode's schedules."""
    text = chain_config_toml(build_locations(locations))
    for schedule in mode.schedules:
        text += (
            f'\n[[schedules]]\nname = "{schedule.name}"\njob = "{schedule.job}"\n'
            f'cron = "{schedule.cron}"\n'
        )
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def create_token(env: dict[str, str]) -> str:
    """A ``trigger`` token, made as an operator makes one: ``fluxion-etl token create``."""
    result = subprocess.run(
        [sys.executable, "-m", "fluxion_etl", "token", "create", "--scope", "trigger",
         "--name", "soak"],
        env=env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT, check=False,
    )  # fmt: skip
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"token create failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()[0]


def backlog(db: Engine, clock: Timekeeper) -> Backlog:
    """Runs queued (however long ago: their workers are slow to start) or running with a
    heartbeat in the last three beats (a silent one's process is dead), and the longest wait."""
    now = clock.now()
    alive_since = now - 3 * timedelta(seconds=HEARTBEAT_REAL * clock.speed)
    query = select(
        func.count(), func.min(case((runs.c.status == "queued", runs.c.created_at)))
    ).where(
        or_(
            runs.c.status == "queued",
            (runs.c.status == "running") & (runs.c.heartbeat_at > alive_since),
        )
    )
    with db.connect() as conn:
        count, oldest = conn.execute(query).one()
    return Backlog(int(count), now - oldest if oldest is not None else timedelta(0))


@contextlib.contextmanager
def soak_stack(
    mode: SoakMode, *, seed: int, speed: float, locations: int, keep: bool
) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix=f"fluxion-soak-{mode.name}-"))
    marker = uuid.uuid4().hex
    outcome: list[Stack] = []

    def tidy() -> None:
        if not keep and outcome and not outcome[0].keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    with contextlib.ExitStack() as stack:
        stack.callback(tidy)
        cluster = stack.enter_context(own_cluster())
        stack.callback(_keep_server_log, cluster, workdir)
        stack.callback(kill_marked, marker)
        migrator = create_db_engine(cluster.url(), pool_size=1)
        upgrade(migrator)
        install_commit_fault(migrator)
        migrator.dispose()
        db = cluster.admin_engine(database="soak")
        stack.callback(db.dispose)
        config_path = workdir / "chain.toml"
        config = write_config(mode, locations, config_path)
        env = service_env(
            mode, speed, database_url=cluster.url(), config_path=config_path, marker=marker
        )
        token = create_token(env)
        clock = Timekeeper(
            workdir / "clock", mode.timeline().clock_start, speed, lambda: backlog(db, clock)
        )
        clock.start_running()
        stack.callback(clock.stop)
        env["FLUXION_CLOCK"] = clock.spec()
        sim = launch_simulator(
            locations=locations, skus=mode.skus, lines_per_day=mode.lines_per_day, seed=seed,
            clock=clock.spec(), env=env, log_path=workdir / "sim.log",
        )  # fmt: skip
        stack.callback(sim.stop)
        env["FLUXION_KLK_BASE_URL"] = sim.url
        serves = serve_processes(2, env, workdir)
        for serve in serves:
            stack.callback(serve.stop, 90.0)
            serve.launch()
        sim.wait_ready(STARTUP_TIMEOUT)
        for serve in serves:
            serve.wait_ready(STARTUP_TIMEOUT)
        clock.release()
        sim_control = SimControl(sim.url)
        stack.callback(sim_control.close)
        api = Api([serve.url for serve in serves], token)
        stack.callback(api.close)
        outcome.append(
            Stack(workdir, cluster, db, clock, sim, sim_control, serves, api, config, marker, env)
        )
        try:
            yield outcome[0]
        except BaseException:
            outcome[0].keep_workdir = True
            raise


def _keep_server_log(cluster: PgCluster, workdir: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.copy(cluster.log_path, workdir / "postgresql.log")
