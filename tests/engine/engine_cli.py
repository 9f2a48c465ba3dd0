"""Running the real ``fluxion-etl`` command against the simulator served by the test process.

The command and the simulator share simulated time through a clock spec (``FLUXION_CLOCK``):
a ``SharedClock`` runs at real speed from a chosen instant, and ``advance`` moves both sides
between launches (never while a command runs).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from engine_support import LOCATIONS, Chain, build_world, chain_config, fast_settings
from sqlalchemy import Engine, text

from fluxion_etl.domain.clock import ScaledClock
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.topology import chain_config_toml
from fluxion_etl.store.db import create_db_engine

FLUXION = str(Path(sys.executable).parent / "fluxion-etl")
KILLED = -9  # returncode of a process that died of SIGKILL
LEASE_TTL = 600.0
"""Simulated seconds; long, so that no process (each reaps when it starts) takes a live but
starved run for dead on a loaded machine. Tests that want a lease expired move the clock."""


class SharedClock(ScaledClock):
    """Real-time simulated clock whose spec a child process can rebuild exactly."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start, 1.0)

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self.start += timedelta(seconds=seconds, **kwargs)
        return self.now()


@dataclass
class CliChain:
    """A chain (simulator, database, configuration file) and the environment to run the CLI."""

    chain: Chain
    config_path: Path
    database_url: str

    def env(self, **overrides: str) -> dict[str, str]:
        clock = self.chain.clock
        assert isinstance(clock, SharedClock)
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLUXION_")}
        return base | {
            "FLUXION_DATABASE_URL": self.database_url,
            "FLUXION_KLK_BASE_URL": self.chain.url,
            "FLUXION_CONFIG": str(self.config_path),
            "FLUXION_CLOCK": clock.spec(),
            "FLUXION_CONCURRENCY": "1",  # locations in configuration order: crash points are exact
            "FLUXION_KLK_RETRY_INITIAL_WAIT": "0.01",
            "FLUXION_KLK_RETRY_MAX_WAIT": "0.02",
            "FLUXION_HEARTBEAT_SECONDS": "0.5",
            "FLUXION_LEASE_TTL_SECONDS": str(LEASE_TTL),
            "FLUXION_LOG_FORMAT": "json",
            **overrides,
        }

    def launch(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [FLUXION, *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, **env: str) -> Finished:
        return finish(self.launch(*args, **env))


@dataclass(frozen=True)
class Finished:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{self.args} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def finish(process: subprocess.Popen[str], timeout: float = 240) -> Finished:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    args = [str(a) for a in process.args]  # type: ignore[union-attr]
    return Finished(args, process.returncode, stdout, stderr)


@contextmanager
def cli_chain(database_url: str, tmp_path: Path, start: datetime) -> Iterator[CliChain]:
    """The simulator on loopback at simulated ``start``, a database and a configuration file."""
    clock = SharedClock(start)
    world = build_world(clock)
    plan = FaultPlan(seed=world.seed)
    config_path = tmp_path / "chain.toml"
    config_path.write_text(chain_config_toml(tuple(world.location(i) for i in LOCATIONS)))
    engine: Engine = create_db_engine(database_url)
    with running_simulator(world, plan) as url:
        chain = Chain(
            engine=engine,
            world=world,
            plan=plan,
            clock=clock,
            url=url,
            config=chain_config(world),
            settings=fast_settings(database_url, url, lease_ttl_seconds=LEASE_TTL),
        )
        try:
            yield CliChain(chain, config_path, database_url)
        finally:
            chain.close()
            engine.dispose()


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got {lines}"
    return lines[0]


TABLES = (
    "runs",
    "run_items",
    "run_logs",
    "raw_payloads",
    "sales_lines",
    "sales_coverage",
    "inventory_current",
    "sync_state",
    "leases",
)


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table a run writes to."""
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
