"""``python -m bench.service``: the trigger API under concurrent callers, and the scheduler.

A real ``fluxion-etl serve`` process (inline launcher, embedded scheduler) over a small simulated
chain, driven from this process over loopback:

    latency   ``--clients`` concurrent callers, each sending ``--requests`` ``POST /api/etl/sync``
              in turn; the Idempotency-Keys come from ``--keys`` distinct values, so exactly that
              many runs must exist afterwards (more would be duplicates). Latency percentiles are
              of the whole HTTP exchange as the caller sees it.
    fires     a schedule firing every minute: delay from the scheduled instant to the run row.
    idle      that schedule disabled, nothing running: CPU of the serve process over a window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.common import (
    bench_database,
    exit_cleanly_on_sigterm,
    load_note,
    machine,
    markdown_table,
    migrate,
)
from fluxion_etl.sim.server import simulator_process
from fluxion_etl.sim.topology import build_locations, chain_config_toml
from fluxion_etl.store import schedules, tokens
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.schema import fires, runs

SERVING = "fluxion-etl serving on "
FIRE_SCHEDULE = "bench-fire"
LOCATIONS = 3


def config_text() -> str:
    """Three small stores; the default schedules off, one schedule firing every minute."""
    locations = chain_config_toml(build_locations(LOCATIONS))
    off = "\n".join(
        f'[[schedules]]\nname = "{name}"\njob = "{job}"\ncron = "{cron}"\nenabled = false\n'
        for name, job, cron in (
            ("inventory", "inventory", "0,30 * * * *"),
            ("sales", "sales", "5,35 * * * *"),
            ("sales-reconcile", "reconcile", "0 3 * * *"),
        )
    )
    fire = (
        f'[[schedules]]\nname = "{FIRE_SCHEDULE}"\njob = "inventory"\ncron = "* * * * *"\n'
        'locations = ["tienda_01"]\n'
    )
    return f"{locations}\n{off}\n{fire}"


@contextmanager
def served(database: str, klk: str, config: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m fluxion_etl serve`` on a free loopback port; yields (URL, process)."""
    env = {
        **os.environ,
        "FLUXION_DATABASE_URL": database,
        "FLUXION_KLK_BASE_URL": klk,
        "FLUXION_CONFIG": str(config),
        "FLUXION_LOG_FORMAT": "json",
        "FLUXION_LAUNCHER": "inline",
        "FLUXION_SCHEDULER": "embedded",
    }
    command = [sys.executable, "-m", "fluxion_etl", "serve", "--port", "0", "--grace", "5"]
    process = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        yield _announced_url(process), process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _announced_url(process: subprocess.Popen[str], timeout: float = 60) -> str:
    found: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if SERVING in line and not found:
                found.append(line.split(SERVING, 1)[1].strip())
        # keep draining so the server never blocks on a full pipe

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("fluxion-etl serve did not start")
        time.sleep(0.05)
    url = found[0]
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code < 500:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return url


# --- latency --------------------------------------------------------------------------------------


@dataclass
class Answers:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    run_ids: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    created: Counter[str] = field(default_factory=Counter)  # 202 answers per key


async def _caller(
    url: str, token: str, index: int, requests: int, keys: int, start: asyncio.Event, out: Answers
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        await start.wait()
        for n in range(requests):
            key = f"bench-{(index * requests + n) % keys}"
            started = time.perf_counter()
            answer = await client.post(
                "/api/etl/sync",
                json={"ubicacion_id": "tienda_01"},
                headers={"Idempotency-Key": key},
            )
            out.latencies.append(time.perf_counter() - started)
            out.statuses[answer.status_code] += 1
            if answer.status_code in (200, 202):
                out.run_ids[key].add(int(answer.json()["run_id"]))
            if answer.status_code == 202:
                out.created[key] += 1


async def _all_callers(url: str, token: str, clients: int, requests: int, keys: int) -> Answers:
    out = Answers()
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(_caller(url, token, i, requests, keys, start, out))
        for i in range(clients)
    ]
    await asyncio.sleep(0.5)  # every caller is waiting at the gate
    start.set()
    await asyncio.gather(*tasks)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- fires and idle CPU ---------------------------------------------------------------------------


def wait_for_fires(database: str, count: int, timeout: float) -> list[float]:
    """Seconds from each scheduled instant to its run row, for the next ``count`` fires."""
    engine = create_db_engine(database)
    deadline = time.monotonic() + timeout
    query = (
        select(fires.c.scheduled_for, runs.c.created_at)
        .join(runs, runs.c.id == fires.c.run_id)
        .where(fires.c.schedule_name == FIRE_SCHEDULE)
        .order_by(fires.c.scheduled_for)
    )
    delays: list[float] = []
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        delays = [(created - scheduled).total_seconds() for scheduled, created in rows]
        if len(delays) >= count:
            break
        time.sleep(1)
    engine.dispose()
    return delays[:count]


def disable_fires(database: str) -> None:
    engine = create_db_engine(database)
    with engine.begin() as conn:
        schedules.update_schedule(
            conn, FIRE_SCHEDULE, enabled=False, by="bench", now=datetime.now(UTC)
        )
    engine.dispose()


def wait_until_idle(database: str, timeout: float = 120) -> None:
    engine = create_db_engine(database)
    deadline = time.monotonic() + timeout
    busy = select(func.count()).where(runs.c.status.in_(("queued", "running")))
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(busy).scalar_one() == 0:
                break
        time.sleep(0.5)
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - started)


# --- the run --------------------------------------------------------------------------------------


@dataclass
class ServiceReport:
    machine: dict[str, Any]
    dialect: str
    clients: int
    requests: int
    keys: int
    answers: Answers
    runs_created: int
    fire_delays: list[float]
    idle_cpu: float | None
    load: str = ""

    @property
    def duplicates(self) -> int:
        """Runs beyond one per key, plus keys answered with more than one run id."""
        split = sum(1 for ids in self.answers.run_ids.values() if len(ids) > 1)
        return max(0, self.runs_created - self.keys) + split

    def markdown(self) -> str:
        lat = [v * 1000 for v in self.answers.latencies]
        rows: list[list[Any]] = [
            ["requests", f"{len(lat):,} from {self.clients} concurrent clients"],
            ["answers", ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.statuses.items()))],
            ["latency p50 / p95 / p99 / max", " / ".join(
                f"{percentile(lat, q):.0f} ms" for q in (0.5, 0.95, 0.99, 1.0))],
            ["runs created for distinct keys", f"{self.runs_created} for {self.keys} keys"],
            ["duplicate runs", str(self.duplicates)],
        ]  # fmt: skip
        if self.fire_delays:
            rows.append([
                "scheduler fire delay (median / max)",
                f"{statistics.median(self.fire_delays):.2f} s / {max(self.fire_delays):.2f} s "
                f"over {len(self.fire_delays)} fires",
            ])  # fmt: skip
        if self.idle_cpu is not None:
            rows.append(["serve process idle CPU", f"{self.idle_cpu:.2f} % of one core"])
        head = f"On {self.dialect}; machine {self.machine}; {self.load}\n\n"
        return head + markdown_table(["", "measured"], rows)


@contextmanager
def database(dialect: str, workdir: Path) -> Iterator[str]:
    if dialect == "postgresql":
        with bench_database("service") as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'service.db'}"


def trigger_token(url: str) -> str:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        created = tokens.create_token(
            conn, name="bench", scope=tokens.Scope.TRIGGER, now=datetime.now(UTC)
        )
    engine.dispose()
    return created.secret


def count_runs(url: str) -> int:
    """Runs the API created (the scheduler's fires carry keys of their own)."""
    engine = create_db_engine(url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).where(runs.c.trigger == "api")).scalar_one()
    engine.dispose()
    return int(count)


def run(
    dialect: str, clients: int, requests: int, keys: int, fire_count: int, idle_seconds: float
) -> ServiceReport:
    before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="fluxion-service-") as tmp,
        simulator_process(locations=LOCATIONS, skus=50, lines_per_day=30) as sim,
        database(dialect, Path(tmp)) as url,
    ):
        config = Path(tmp) / "chain.toml"
        config.write_text(config_text())
        migrate(url)
        token = trigger_token(url)
        with served(url, sim.url, config) as (api, process):
            answers = asyncio.run(_all_callers(api, token, clients, requests, keys))
            delays = wait_for_fires(url, fire_count, 70 * fire_count + 10) if fire_count else []
            idle = None
            if idle_seconds > 0:
                disable_fires(url)
                wait_until_idle(url)
                idle = idle_cpu_percent(process.pid, idle_seconds)
        created = count_runs(url)
    report = ServiceReport(
        machine(), dialect, clients, requests, keys, answers, created, delays, idle
    )
    report.load = load_note(before, os.getloadavg()[0])
    return report


def main(argv: Sequence[str] | None = None) -> ServiceReport:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--dialect", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5, help="per client")
    parser.add_argument("--keys", type=int, default=50, help="distinct Idempotency-Keys")
    parser.add_argument("--fires", type=int, default=3, help="scheduled fires to time (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=30, help="0: skip")
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    report = run(
        args.dialect, args.clients, args.requests, args.keys, args.fires, args.idle_seconds
    )
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
