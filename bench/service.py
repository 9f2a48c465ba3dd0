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
              ``--repeats N``: N such bursts on the same server, each with keys of its own (so
              every burst creates runs), the next once the last one's runs have ended; the first
              burst (a server that has served no trigger yet) is reported apart, beside the median
              and range of every burst's figures and the figures of all calls pooled.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
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


def config_text(*, fires: bool = True) -> str:
    """Three small stores; the default schedules off, one schedule firing every minute (off when
    no fires are timed: a fire during the bursts would hold the callers' location)."""
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
        f'locations = ["tienda_01"]\nenabled = {"true" if fires else "false"}\n'
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


def _key(index: int, n: int, requests: int, keys: int, burst: int = 0) -> str:
    """Caller ``index``'s ``n``-th key; each burst draws from values of its own."""
    prefix = "bench" if burst == 0 else f"bench{burst}"
    return f"{prefix}-{(index * requests + n) % keys}"


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


@dataclass(frozen=True)
class Burst:
    """What every caller of one burst sends: ``requests`` calls each, keys from ``keys`` values
    of burst number ``number``'s own."""

    clients: int
    requests: int
    keys: int
    number: int = 0

    def key(self, index: int, n: int) -> str:
        return _key(index, n, self.requests, self.keys, self.number)


async def _raw_caller(
    url: str, token: str, index: int, burst: Burst, start: asyncio.Event, out: Answers
) -> None:
    connection = await RawConnection.open(url, token)
    try:
        await connection.warm()
        out.ready += 1
        await start.wait()
        for n in range(burst.requests):
            key = burst.key(index, n)
            started = time.perf_counter()
            status, body = await connection.post(key)
            out.record(key, started, status, body)
    finally:
        await connection.close()


async def _httpx_caller(
    url: str, token: str, index: int, burst: Burst, start: asyncio.Event, out: Answers
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        await client.get(WARM_PATH)  # connect and warm before the gate, as the raw client does
        out.ready += 1
        await start.wait()
        for n in range(burst.requests):
            key = burst.key(index, n)
            started = time.perf_counter()
            answer = await client.post(
                "/api/etl/sync",
                content=BODY,
                headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            )
            out.record(key, started, answer.status_code, answer.content)


CALLERS = {"raw": _raw_caller, "httpx": _httpx_caller}


async def _all_callers(
    url: str, token: str, burst: Burst, *, driver: str, server_pid: int
) -> Answers:
    """Every caller connects, waits at one gate, then sends its requests one after another."""
    out = Answers()
    start = asyncio.Event()
    caller = CALLERS[driver]
    tasks = [
        asyncio.create_task(caller(url, token, i, burst, start, out)) for i in range(burst.clients)
    ]
    while out.ready < burst.clients and not any(task.done() for task in tasks):
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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, of its children that have exited (run workers) and of
    those still running (the pool launcher's workers, a worker in the middle of its run)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # exited meanwhile: its parent's count has it once it is waited for
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(map(process_cpu_seconds, _children(pid)))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def idle_cpu_percent(pid: int, seconds: float) -> float:
    before, started = process_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (process_cpu_seconds(pid) - before) / (time.monotonic() - started)


# --- the run --------------------------------------------------------------------------------------


def pooled(bursts: Sequence[Answers]) -> Answers:
    """Every burst's calls as one set (their keys differ, so their run ids stay apart)."""
    if len(bursts) == 1:
        return bursts[0]
    out = Answers()
    for burst in bursts:
        out.latencies.extend(burst.latencies)
        out.statuses.update(burst.statuses)
        out.created.update(burst.created)
        for key, ids in burst.run_ids.items():
            out.run_ids[key] |= ids
        out.ready += burst.ready
        out.wall_s += burst.wall_s
        out.driver_cpu_s += burst.driver_cpu_s
        out.server_cpu_s += burst.server_cpu_s
    return out


def p99_ms(answers: Answers) -> float:
    return percentile([v * 1000 for v in answers.latencies], 0.99)


def spread(values: Sequence[float]) -> str:
    """``median (lowest–highest)``, whole milliseconds."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


@dataclass
class Contender:
    """One latency measurement: a server (this checkout or ``--compare-src``) with a launcher,
    driven by one burst of callers or several one after another (``--repeats``)."""

    label: str
    keys: int  # distinct Idempotency-Keys per burst
    bursts: list[Answers]
    runs_created: int = 0

    @property
    def answers(self) -> Answers:
        """Every burst's calls pooled."""
        return pooled(self.bursts)

    @property
    def duplicates(self) -> int:
        """Runs beyond one per key, plus keys answered with more than one run id."""
        split = sum(1 for ids in self.answers.run_ids.values() if len(ids) > 1)
        return max(0, self.runs_created - self.keys * len(self.bursts)) + split

    def rows(self) -> list[tuple[str, str]]:
        """(row name, figure): the pooled calls, then, over several bursts, each burst's p99."""
        out = self.answers
        lat = [v * 1000 for v in out.latencies]
        count = len(lat)
        wall = out.wall_s or float("nan")
        several = len(self.bursts) > 1
        pooled_note = f" (all {len(self.bursts)} bursts' calls)" if several else ""
        rows = [
            ("requests", f"{count:,}"),
            ("answers by status", ", ".join(f"{k}: {v}" for k, v in sorted(out.statuses.items()))),
            (
                f"latency p50 / p95 / p99 / max{pooled_note}",
                " / ".join(f"{percentile(lat, q):,.0f}" for q in (0.5, 0.95, 0.99, 1.0)) + " ms",
            ),
        ]
        if several:
            p99s = [p99_ms(burst) for burst in self.bursts]
            p50s = [percentile([v * 1000 for v in b.latencies], 0.5) for b in self.bursts]
            rows += [
                ("p99 of each burst, in order", ", ".join(f"{v:,.0f}" for v in p99s) + " ms"),
                ("p99 of the first burst (the server's first triggers)", f"{p99s[0]:,.0f} ms"),
                (f"**p99, median (range) of the {len(p99s)} bursts**", f"{spread(p99s)} ms"),
                ("p99, median (range) of the bursts after the first", f"{spread(p99s[1:])} ms"),
                (f"p50, median (range) of the {len(p50s)} bursts", f"{spread(p50s)} ms"),
            ]
        rows += [
            ("answers a second", f"{count / wall:,.0f} /s over {out.wall_s:.2f} s"),
            (
                "server CPU (serve + run workers)",
                f"{out.server_cpu_s:.2f} s ({1000 * out.server_cpu_s / count:.1f} ms a request)",
            ),
            (
                "driver CPU",
                f"{out.driver_cpu_s:.2f} s ({100 * out.driver_cpu_s / wall:.0f} % of one core)",
            ),
            (
                "runs created by the API",
                f"{self.runs_created} for {self.keys * len(self.bursts)} keys",
            ),
            ("**duplicate runs**", str(self.duplicates)),
        ]
        return rows


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
    repeats: int = 1

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
            f"{self.requests} requests, Idempotency-Keys from {self.keys} values"
            + (
                f"; {self.repeats} bursts on each server, each with keys of its own, the next "
                "once the last one's runs have ended"
                if self.repeats > 1
                else ""
            )
            + "\n\n"
        )
        columns = [c.rows() for c in self.contenders]
        names = [name for name, _ in columns[0]]
        rows = [[name, *(col[i][1] for col in columns)] for i, name in enumerate(names)]
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
                f"serve process (and its workers) idle CPU ({self.idle_seconds:.0f} s)",
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
    repeats: int = 1


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
        config.write_text(config_text(fires=options.fire_count > 0))
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
                        settle = partial(wait_until_idle, url)
                        bursts = _bursts(api, token, process.pid, options, settle)
                        if first:
                            delays, idle = _scheduler(url, process, options)
                        wait_until_idle(url)
                    contenders.append(Contender(label, options.keys, bursts, count_runs(url)))
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
        repeats=options.repeats,
    )
    report.load = load_note(before, os.getloadavg()[0])
    return report


FLOORS = {"asgi": "floor: bare ASGI app", "fastapi": "floor: one FastAPI route"}


def _floor(kind: str, options: Options) -> Contender:
    """The same callers against a server that does no work (bench/floor.py)."""
    with served_floor(kind) as (url, process):
        bursts = _bursts(url, "floor", process.pid, options, settle=lambda: None)
    return Contender(FLOORS[kind], options.keys, bursts, runs_created=0)


def _bursts(
    url: str, token: str, server_pid: int, options: Options, settle: Callable[[], None]
) -> list[Answers]:
    """``options.repeats`` bursts of callers, one after another, each with keys of its own;
    ``settle`` between two (the real server: until the last burst's runs have ended, so that
    the next finds its location free and creates runs too)."""
    answers: list[Answers] = []
    for number in range(options.repeats):
        if number:
            settle()
        burst = Burst(options.clients, options.requests, options.keys, number)
        answers.append(
            asyncio.run(
                _all_callers(url, token, burst, driver=options.driver, server_pid=server_pid)
            )
        )
    return answers


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
        default="inline,pool,subprocess",
        help="comma-separated: inline (runs execute in the serve process), pool (in worker "
        "processes started with it), subprocess (a process per run)",
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
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="bursts of callers per server, each with keys of its own, the next once the last "
        "one's runs have ended; the first burst is reported apart, then the median and range "
        "of every burst's p99 and all calls pooled",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
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
        repeats=args.repeats,
    )
    print(f"uptime before: {os.getloadavg()}", flush=True)
    report = run(options)
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
