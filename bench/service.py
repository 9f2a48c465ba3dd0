"""``python -m bench.service``: the trigger API under concurrent callers, and the scheduler.

A real ``fluxion-etl serve`` process (embedded scheduler) over a small simulated chain, driven
from this process over loopback:

    latency   ``--clients`` concurrent callers, each on its own keep-alive connection, each sending
              ``--requests`` ``POST /api/etl/sync`` in turn; the Idempotency-Keys come from
              ``--keys`` distinct values, so at most that many runs may exist afterwards (more
              would be duplicates). Latency percentiles are of the whole HTTP exchange as the
              caller sees it. Once per ``--launcher`` (``inline``: the runs execute in the serve
              process; ``subprocess``: in child processes, as ECS keeps them out of it), each on a
              fresh database and server; the driver's own CPU and the server's are reported.
    fires     a schedule firing every minute: delay from the scheduled instant to the run row.
    idle      that schedule disabled, nothing running: CPU of the serve process over a window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from urllib.parse import urlsplit

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
def served(
    database: str, klk: str, config: Path, *, launcher: str = "inline", source: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m fluxion_etl serve`` on a free loopback port; yields (URL, process).

    ``source``: serve the package found there (another checkout's ``src``) instead of this one.
    """
    env = {
        **os.environ,
        "FLUXION_DATABASE_URL": database,
        "FLUXION_KLK_BASE_URL": klk,
        "FLUXION_CONFIG": str(config),
        "FLUXION_LOG_FORMAT": "json",
        "FLUXION_LAUNCHER": launcher,
        "FLUXION_SCHEDULER": "embedded",
    }
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(source), env.get("PYTHONPATH"))))
    command = [sys.executable, "-m", "fluxion_etl", "serve", "--port", "0", "--grace", "5"]
    with _server_process(command, env) as started:
        yield started


@contextmanager
def served_floor(kind: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m bench.floor --kind KIND``: a server doing no work (see bench/floor.py)."""
    with _server_process([sys.executable, "-m", "bench.floor", "--kind", kind], None) as started:
        yield started


@contextmanager
def _server_process(
    command: list[str], env: dict[str, str] | None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
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

BODY = b'{"ubicacion_id": "tienda_01"}'
# Before the gate opens every caller makes one authenticated read, so the measured calls meet a
# server that has answered calls before (its database pool open), as a running service has.
WARM_PATH = "/api/etl/runs?limit=1"


@dataclass
class Answers:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    run_ids: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    created: Counter[str] = field(default_factory=Counter)  # 202 answers per key
    ready: int = 0  # callers connected and warmed, waiting at the gate
    wall_s: float = 0.0  # from the gate opening to the last answer
    driver_cpu_s: float = 0.0  # this process's CPU over the same window
    server_cpu_s: float = 0.0  # the serve process's CPU (and its children's) over it

    def record(self, key: str, started: float, status: int, body: bytes) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] += 1
        run_id = json.loads(body).get("run_id") if status in (200, 202) else None
        if run_id is not None:  # (the floors answer without one)
            self.run_ids[key].add(int(run_id))
        if status == 202:
            self.created[key] += 1


def _key(index: int, n: int, requests: int, keys: int) -> str:
    return f"bench-{(index * requests + n) % keys}"


class RawConnection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for the bench.

    httpx costs the driver about as much CPU per request as the server spends answering it, and
    the driver shares the machine's two cores with the server; this client costs a fraction of
    that. It still sends the whole request a caller sends and waits for the whole answer.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, token: str
    ) -> None:
        self.reader, self.writer = reader, writer
        self.common = f"HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        self.head = (
            f"POST /api/etl/sync {self.common}Content-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n"
        )

    @classmethod
    async def open(cls, url: str, token: str) -> RawConnection:
        parsed = urlsplit(url)
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        return cls(reader, writer, parsed.netloc, token)

    async def warm(self) -> int:
        """One authenticated read (``WARM_PATH``) before the measured calls."""
        self.writer.write(f"GET {WARM_PATH} {self.common}\r\n".encode())
        return (await self._answer())[0]

    async def post(self, key: str) -> tuple[int, bytes]:
        """Send one trigger and read its whole answer: (status, body)."""
        self.writer.write(f"{self.head}Idempotency-Key: {key}\r\n\r\n".encode() + BODY)
        return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(head[0].split(" ", 2)[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _raw_caller(
    url: str, token: str, index: int, requests: int, keys: int, start: asyncio.Event, out: Answers
) -> None:
    connection = await RawConnection.open(url, token)
    try:
        await connection.warm()
        out.ready += 1
        await start.wait()
        for n in range(requests):
            key = _key(index, n, requests, keys)
            started = time.perf_counter()
            status, body = await connection.post(key)
            out.record(key, started, status, body)
    finally:
        await connection.close()


async def _httpx_caller(
    url: str, token: str, index: int, requests: int, keys: int, start: asyncio.Event, out: Answers
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        await client.get(WARM_PATH)  # connect and warm before the gate, as the raw client does
        out.ready += 1
        await start.wait()
        for n in range(requests):
            key = _key(index, n, requests, keys)
            started = time.perf_counter()
            answer = await client.post(
                "/api/etl/sync",
                content=BODY,
                headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            )
            out.record(key, started, answer.status_code, answer.content)


CALLERS = {"raw": _raw_caller, "httpx": _httpx_caller}


async def _all_callers(
    url: str, token: str, clients: int, requests: int, keys: int, *, driver: str, server_pid: int
) -> Answers:
    """Every caller connects, waits at one gate, then sends its requests one after another."""
    out = Answers()
    start = asyncio.Event()
    caller = CALLERS[driver]
    tasks = [
        asyncio.create_task(caller(url, token, i, requests, keys, start, out))
        for i in range(clients)
    ]
    while out.ready < clients and not any(task.done() for task in tasks):
        await asyncio.sleep(0.05)  # until every caller has connected, warmed and waits at the gate
    server_before, cpu_before = process_cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    out.wall_s = time.perf_counter() - started
    out.driver_cpu_s = time.process_time() - cpu_before
    out.server_cpu_s = process_cpu_seconds(server_pid) - server_before
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
    """User + system CPU of the process itself."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and of its children that have exited (run workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - started)


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One latency measurement: a server (this checkout or ``--compare-src``) with a launcher."""

    label: str
    keys: int
    answers: Answers
    runs_created: int = 0

    @property
    def duplicates(self) -> int:
        """Runs beyond one per key, plus keys answered with more than one run id."""
        split = sum(1 for ids in self.answers.run_ids.values() if len(ids) > 1)
        return max(0, self.runs_created - self.keys) + split

    def rows(self) -> list[str]:
        out = self.answers
        lat = [v * 1000 for v in out.latencies]
        count = len(lat)
        wall = out.wall_s or float("nan")
        return [
            f"{count:,}",
            ", ".join(f"{k}: {v}" for k, v in sorted(out.statuses.items())),
            " / ".join(f"{percentile(lat, q):,.0f}" for q in (0.5, 0.95, 0.99, 1.0)) + " ms",
            f"{count / wall:,.0f} /s over {out.wall_s:.2f} s",
            f"{out.server_cpu_s:.2f} s ({1000 * out.server_cpu_s / count:.1f} ms a request)",
            f"{out.driver_cpu_s:.2f} s ({100 * out.driver_cpu_s / wall:.0f} % of one core)",
            f"{self.runs_created} for {self.keys} keys",
            str(self.duplicates),
        ]


ROW_NAMES = [
    "requests",
    "answers by status",
    "latency p50 / p95 / p99 / max",
    "answers a second",
    "server CPU (serve + run workers)",
    "driver CPU",
    "runs created by the API",
    "**duplicate runs**",
]


@dataclass
class ServiceReport:
    machine: dict[str, Any]
    dialect: str
    clients: int
    requests: int
    keys: int
    driver: str
    contenders: list[Contender]
    fire_delays: list[float]
    idle_cpu: float | None
    idle_seconds: float = 0.0
    load: str = ""

    @property
    def answers(self) -> Answers:
        return self.contenders[0].answers

    @property
    def runs_created(self) -> int:
        return self.contenders[0].runs_created

    @property
    def duplicates(self) -> int:
        return sum(contender.duplicates for contender in self.contenders)

    def markdown(self) -> str:
        head = (
            f"On {self.dialect}; machine {self.machine}; {self.load}\n\n"
            f"{self.clients} concurrent clients (one connection each, {self.driver} driver) x "
            f"{self.requests} requests, Idempotency-Keys from {self.keys} values\n\n"
        )
        columns = [c.rows() for c in self.contenders]
        rows = [[name, *(col[i] for col in columns)] for i, name in enumerate(ROW_NAMES)]
        text = head + markdown_table(["", *(c.label for c in self.contenders)], rows)
        scheduler: list[list[Any]] = []
        if self.fire_delays:
            scheduler.append([
                "scheduler fire delay (median / max)",
                f"{statistics.median(self.fire_delays):.2f} s / {max(self.fire_delays):.2f} s "
                f"over {len(self.fire_delays)} fires",
            ])  # fmt: skip
        if self.idle_cpu is not None:
            scheduler.append([
                f"serve process idle CPU ({self.idle_seconds:.0f} s)",
                f"{self.idle_cpu:.2f} % of one core",
            ])  # fmt: skip
        if scheduler:
            label = self.contenders[0].label
            text += "\n\n" + markdown_table(["", f"measured ({label})"], scheduler)
        return text


@contextmanager
def database(dialect: str, workdir: Path) -> Iterator[str]:
    if dialect == "postgresql":
        with bench_database("service") as url:
            yield url
    else:
        workdir.mkdir(parents=True, exist_ok=True)
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


@dataclass(frozen=True)
class Options:
    dialect: str = "postgresql"
    clients: int = 200
    requests: int = 5
    keys: int = 50
    fire_count: int = 3
    idle_seconds: float = 30.0
    launchers: tuple[str, ...] = ("inline",)
    driver: str = "raw"
    compare_src: Path | None = None
    floors: bool = False


def run(options: Options) -> ServiceReport:
    """Every contender on a fresh database and server, one after another; fires and idle CPU on
    the first one (this checkout, the first launcher)."""
    before = os.getloadavg()[0]
    contenders: list[Contender] = []
    delays: list[float] = []
    idle: float | None = None
    sources: list[Path | None] = (
        [None] if options.compare_src is None else [None, options.compare_src]
    )
    with (
        tempfile.TemporaryDirectory(prefix="fluxion-service-") as tmp,
        simulator_process(locations=LOCATIONS, skus=50, lines_per_day=30) as sim,
    ):
        config = Path(tmp) / "chain.toml"
        config.write_text(config_text())
        for launcher in options.launchers:
            for source in sources:
                first = not contenders
                label = f"{launcher} launcher" + ("" if source is None else f", {source}")
                with database(options.dialect, Path(tmp) / str(len(contenders))) as url:
                    migrate(url)
                    token = trigger_token(url)
                    with served(url, sim.url, config, launcher=launcher, source=source) as (
                        api,
                        process,
                    ):
                        answers = asyncio.run(
                            _all_callers(
                                api,
                                token,
                                options.clients,
                                options.requests,
                                options.keys,
                                driver=options.driver,
                                server_pid=process.pid,
                            )
                        )
                        if first:
                            delays, idle = _scheduler(url, process, options)
                        wait_until_idle(url)
                    contenders.append(Contender(label, options.keys, answers, count_runs(url)))
        for kind in FLOORS if options.floors else ():
            contenders.append(_floor(kind, options))
    report = ServiceReport(
        machine(),
        options.dialect,
        options.clients,
        options.requests,
        options.keys,
        options.driver,
        contenders,
        delays,
        idle,
        options.idle_seconds,
    )
    report.load = load_note(before, os.getloadavg()[0])
    return report


FLOORS = {"asgi": "floor: bare ASGI app", "fastapi": "floor: one FastAPI route"}


def _floor(kind: str, options: Options) -> Contender:
    """The same callers against a server that does no work (bench/floor.py)."""
    with served_floor(kind) as (url, process):
        answers = asyncio.run(
            _all_callers(
                url,
                "floor",
                options.clients,
                options.requests,
                options.keys,
                driver=options.driver,
                server_pid=process.pid,
            )
        )
    return Contender(FLOORS[kind], options.keys, answers, runs_created=0)


def _scheduler(
    url: str, process: subprocess.Popen[str], options: Options
) -> tuple[list[float], float | None]:
    """Fire delays, then idle CPU once the schedule is disabled and nothing runs."""
    count = options.fire_count
    delays = wait_for_fires(url, count, 70 * count + 10) if count else []
    if options.idle_seconds <= 0:
        return delays, None
    disable_fires(url)
    wait_until_idle(url)
    return delays, idle_cpu_percent(process.pid, options.idle_seconds)


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
    parser.add_argument("--idle-seconds", type=float, default=60, help="0: skip")
    parser.add_argument(
        "--launchers",
        default="inline,subprocess",
        help="comma-separated: inline (runs execute in the serve process), subprocess",
    )
    parser.add_argument(
        "--driver",
        choices=sorted(CALLERS),
        default="raw",
        help="raw: a minimal HTTP/1.1 client (cheap); httpx: httpx.AsyncClient per caller",
    )
    parser.add_argument(
        "--compare-src",
        type=Path,
        help="also serve the package in this directory (e.g. `git archive` of an earlier "
        "commit's src), interleaved with this checkout, for before/after ratios",
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also drive a bare ASGI app and one FastAPI route doing no work (bench/floor.py): "
        "the latency this machine gives a server that does nothing, in the same run",
    )
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    options = Options(
        dialect=args.dialect,
        clients=args.clients,
        requests=args.requests,
        keys=args.keys,
        fire_count=args.fires,
        idle_seconds=args.idle_seconds,
        launchers=tuple(name.strip() for name in args.launchers.split(",") if name.strip()),
        driver=args.driver,
        compare_src=args.compare_src,
        floors=args.floors,
    )
    print(f"uptime before: {os.getloadavg()}", flush=True)
    report = run(options)
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
