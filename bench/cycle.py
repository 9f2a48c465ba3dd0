"""``python -m bench.cycle``: whole scheduled cycles through the real runner and the simulator.

A cycle is what the default schedules fire every 30 minutes: inventory for every location, then
sales for the last window. The KLK simulator runs in its own process (``fluxion-etl klk-sim``) and
the ETL in another (``bench.cycle_worker``), talking HTTP over loopback, so each process's time
and memory are its own. Two cycles are measured:

    cold     an empty database at 21:30 (Caracas), stores closed: every catalogue is new and the
             sales window is the whole day (the ~1 M lines of the ``large`` scale)
    steady   30 minutes later: catalogues compared (nothing changed after closing), sales read
             from the watermark minus the 60-minute overlap

``--cold-at 15:00`` moves both into opening hours: the stores sell between the two cycles, so
every catalogue has changed (about one article in a hundred) and the cold window is the day so
far.

Beside them: the simulator alone serving the same calls (first time, then from its cache), and on
PostgreSQL the fixed baseline (bench/baseline_copy_merge.py) loading the rows the cycles
loaded, one transaction per location, into a fresh database: the cold cycle's rows into empty
tables, then (timed apart) the steady cycle's rows on top: every article again and the lines of
the steady window, overlap included. The baseline runs twice, right after the cold cycle and
right after the steady one, and each cycle is compared with the median: a machine that gets
busier or quieter during the run moves both sides. Per cycle: the wall ratio, the time beyond
the load in multiples of it (the issue's "extraction, decoding and bookkeeping at most twice the
load"), and a CPU ratio: the ETL process's CPU plus its PostgreSQL backends' against the
baseline client's plus its backend's (what waiting for a core cannot inflate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import psycopg

from bench import baseline_copy_merge as baseline
from bench.common import (
    bench_database,
    exit_cleanly_on_sigterm,
    load_note,
    machine,
    markdown_table,
    median,
    migrate,
    plain_dsn,
    process_cpu_s,
    ratio,
    stopwatch,
    times,
)
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.windows import scheduled_windows
from fluxion_etl.settings import Settings
from fluxion_etl.sim.server import simulator_process
from fluxion_etl.sim.topology import build_locations, chain_config_toml

CARACAS = ZoneInfo("America/Caracas")
COLD_AT = datetime(2025, 11, 18, 21, 30, tzinfo=CARACAS)  # a Tuesday, stores just closed
STEADY_AT = COLD_AT + timedelta(minutes=30)
STEADY_SALES_SINCE = COLD_AT - timedelta(minutes=60)  # the steady window, overlap included
HISTORY_FROM = COLD_AT.date()  # the simulator sells from this day on: the cold window is one day
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scale:
    locations: int
    skus: int
    lines_per_day: int


SCALES = {
    "tiny": Scale(3, 100, 60),
    "chain": Scale(20, 4_000, 2_000),
    "large": Scale(200, 15_000, 5_000),
}


# --- the simulator alone ----------------------------------------------------------------------


def _sales_body(loc: Location, day: str, start: str | None, end: str | None) -> dict[str, str]:
    body = {"sucursal": loc.branch_code or "", "fecha_desde": day, "fecha_hasta": day}
    body["almacen"] = loc.sales_warehouse.code if loc.sales_warehouse else ""
    if start:
        body["hora_desde"] = start
    if end:
        body["hora_hasta"] = end
    return body


def _calls(loc: Location, at: datetime, watermark: datetime | None) -> list[tuple[str, Any]]:
    """The KLK calls a cycle makes for ``loc``: its catalogues, then its sales windows."""
    calls: list[tuple[str, Any]] = [
        ("/maestra/articulos/almacen", {"Codigoalmacen": w.code}) for w in loc.warehouses
    ]
    if loc.has_sales:
        windows = scheduled_windows(
            watermark=watermark, now=at, zone=loc.zone, overlap=timedelta(minutes=60)
        )
        for w in windows:
            start = w.start_time.strftime("%H:%M:%S") if w.start_time else None
            end = w.end_time.strftime("%H:%M:%S") if w.end_time else None
            calls.append(("/ventas", _sales_body(loc, w.day.isoformat(), start, end)))
    return calls


def simulator_alone(
    url: str, locations: Sequence[Location], at: datetime, watermark: datetime | None, workers: int
) -> dict[str, float]:
    """Seconds the simulator takes to answer a cycle's calls (bytes only, nothing decoded)."""
    received = [0]

    def one_location(loc: Location) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for path, body in _calls(loc, at, watermark):
                response = client.post(path, content=orjson.dumps(body))
                response.raise_for_status()
                received[0] += len(response.content)

    with stopwatch() as elapsed, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one_location, locations))
    return {"seconds": elapsed(), "mb": received[0] / 1e6}


def set_sim_clock(url: str, at: datetime) -> None:
    httpx.post(f"{url}/_sim/clock", json={"set": at.isoformat()}, timeout=30).raise_for_status()


def process_peak_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the ETL --------------------------------------------------------------------------------------


def etl_cycle(
    database: str, klk: str, config: Path, at: datetime, jobs: str = "inventory,sales"
) -> dict[str, Any]:
    """One cycle in a fresh ``bench.cycle_worker`` process; its JSON report."""
    command = [
        sys.executable, "-m", "bench.cycle_worker", "--database", database, "--klk", klk,
        "--config", str(config), "--at", at.isoformat(), "--jobs", jobs,
    ]  # fmt: skip
    # Any PYTHONPATH of the harness is kept: the worker runs the code the harness runs.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cycle worker failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    for job in report["jobs"]:
        if job["failed"]:
            raise RuntimeError(f"locations failed in {job['job']}: {job['errors']}")
    return report


def summarise(report: dict[str, Any]) -> dict[str, float]:
    """Wall, rows and phase times of a cycle (phases summed over jobs and locations)."""
    out = {"wall_s": 0.0, "rows": 0.0, "extract_s": 0.0, "decode_s": 0.0, "load_s": 0.0}
    out["bookkeeping_s"] = 0.0
    out["cpu_s"] = 0.0
    for job in report["jobs"]:
        out["wall_s"] += job["wall_s"]
        out["cpu_s"] += job.get("cpu_s", 0.0)
        out["rows"] += job["fetched"]
        for phase in ("extract_s", "decode_s", "load_s"):
            out[phase] += job[phase]
        inside = job["location_s"] - job["extract_s"] - job["decode_s"] - job["load_s"]
        out["bookkeeping_s"] += max(0.0, inside) + max(0.0, job["wall_s"] - job["span_s"])
        out[f"{job['job']}_wall_s"] = job["wall_s"]
        out[f"{job['job']}_rows"] = job["fetched"]
    out["rows_per_s"] = out["rows"] / out["wall_s"] if out["wall_s"] else 0.0
    out["peak_rss_mb"] = report["peak_rss_mb"]
    db_cpu = report.get("db_cpu_s")
    out["db_cpu_s"] = float("nan") if db_cpu is None else db_cpu
    out["total_cpu_s"] = out["cpu_s"] + (db_cpu or 0.0)
    out["not_load_over_load"] = ratio(
        out["extract_s"] + out["decode_s"] + out["bookkeeping_s"], out["load_s"]
    )
    return out


# --- the baseline on the cold cycle's rows --------------------------------------------------------


def baseline_on_rows_of(
    source_url: str, location_ids: Sequence[str], steady_since: datetime, *, at: datetime = COLD_AT
) -> dict[str, float]:
    """The fixed baseline loading what the cycles loaded, per location, into a fresh database.

    First the cold cycle's rows (every article, the whole day's lines) into empty tables; then,
    timed apart, the steady cycle's rows on top of them: every article again (the catalogues as
    the source holds them now) and the lines sold since ``steady_since`` (the steady window,
    overlap included). Wall seconds, the CPU of this client and of its PostgreSQL backend, and
    the rows of each part, prefixed ``steady_`` for the second (reading rows back is not timed).
    """
    source = plain_dsn(source_url)
    inventory_sql = (
        "SELECT warehouse_code, sku, stock, price_usd, tax_rate FROM inventory_current "
        "WHERE location_id = %s ORDER BY warehouse_code"
    )
    sales_sql = (
        f"SELECT {', '.join(baseline.SALES_COLUMNS)} FROM sales_lines WHERE location_id = %s"
    )
    out: dict[str, float] = {"load_1m": os.getloadavg()[0]}
    for part in ("", "steady_"):
        for key in ("wall_s", "client_cpu_s", "db_cpu_s", "rows"):
            out[part + key] = 0.0
    with bench_database("cycle_baseline") as target_url:
        migrate(target_url)
        with psycopg.connect(source) as src, psycopg.connect(plain_dsn(target_url)) as dst:
            backend = dst.info.backend_pid

            def timed(part: str, loc: str, stock: list[Any], sales: list[Any]) -> None:
                batches = _by_warehouse(loc, stock)
                out[part + "rows"] += len(stock) + len(sales)
                db_cpu, client_cpu = process_cpu_s(backend), time.thread_time()
                with stopwatch() as elapsed:
                    baseline.load_inventory(dst, batches, at)
                    if sales:
                        baseline.load_sales(dst, [(loc, sales)], at)
                out[part + "wall_s"] += elapsed()
                out[part + "client_cpu_s"] += time.thread_time() - client_cpu
                out[part + "db_cpu_s"] += process_cpu_s(backend) - db_cpu

            for loc in location_ids:
                stock = src.execute(inventory_sql, (loc,)).fetchall()
                timed("", loc, stock, src.execute(sales_sql, (loc,)).fetchall())
            since = f"{sales_sql} AND sold_at >= %s"
            for loc in location_ids:
                stock = src.execute(inventory_sql, (loc,)).fetchall()
                timed("steady_", loc, stock, src.execute(since, (loc, steady_since)).fetchall())
    for part in ("", "steady_"):
        out[part + "cpu_s"] = out[part + "client_cpu_s"] + out[part + "db_cpu_s"]
    return out


def _by_warehouse(loc: str, rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, str, list[Any]]]:
    grouped: dict[str, list[Any]] = {}
    for warehouse, *rest in rows:
        grouped.setdefault(warehouse, []).append(tuple(rest))
    return [(loc, warehouse, items) for warehouse, items in grouped.items()]


# --- the run --------------------------------------------------------------------------------------


@dataclass
class CycleReport:
    scale: str
    dialect: str
    machine: dict[str, Any]
    cycles: dict[str, dict[str, float]] = field(default_factory=dict)
    simulator: dict[str, dict[str, float]] = field(default_factory=dict)
    simulator_peak_mb: float = 0.0
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # after which cycle
    load: str = ""
    cold_at: str = COLD_AT.strftime("%H:%M")  # local time of the cold cycle

    def baseline(self, key: str) -> float | None:
        """Median of ``key`` over the baseline runs (None when it was not run)."""
        return median([b[key] for b in self.baselines.values()]) if self.baselines else None

    @property
    def baseline_s(self) -> float | None:
        """Median wall of the baseline loading the cold cycle's rows."""
        return self.baseline("wall_s")

    def against_baseline(self) -> dict[str, dict[str, float]]:
        """Each cycle against the baseline loading that cycle's rows (medians of its runs): the
        wall and CPU ratios, and the cycle's time beyond that load, in multiples of it."""
        out: dict[str, dict[str, float]] = {}
        for name, part in (("cold", ""), ("steady", "steady_")):
            wall, cpu = self.baseline(part + "wall_s"), self.baseline(part + "cpu_s")
            cycle = self.cycles.get(name)
            if cycle is None or wall is None or cpu is None:
                continue
            out[name] = {
                "wall_x": ratio(cycle["wall_s"], wall),
                "cpu_x": ratio(cycle["total_cpu_s"], cpu),
                "beyond_load_x": ratio(cycle["wall_s"] - wall, wall),
                "baseline_wall_s": wall,
                "baseline_cpu_s": cpu,
            }
        return out

    def markdown(self) -> str:
        header = ["", *self.cycles]
        keys = [
            ("total wall", "wall_s", "s"), ("inventory wall", "inventory_wall_s", "s"),
            ("sales wall", "sales_wall_s", "s"), ("rows (articles + lines)", "rows", "n"),
            ("rows per second", "rows_per_s", "n"), ("Σ extract (HTTP)", "extract_s", "s"),
            ("Σ decode", "decode_s", "s"), ("Σ load (transform + database)", "load_s", "s"),
            ("Σ bookkeeping", "bookkeeping_s", "s"),
            ("(extract + decode + bookkeeping) / load", "not_load_over_load", "x"),
            ("ETL process CPU (all threads)", "cpu_s", "s"),
            ("its PostgreSQL backends' CPU", "db_cpu_s", "s"),
            ("ETL peak memory", "peak_rss_mb", "mb"),
            ("load average (1 min) at the start", "load_1m", "n2"),
        ]  # fmt: skip
        rows = [[label, *(_fmt(c.get(key, 0.0), kind) for c in self.cycles.values())]
                for label, key, kind in keys]  # fmt: skip
        rows.append(["simulator alone, first time", *(
            _fmt(self.simulator.get(f"{n}_first", {}).get("seconds", float("nan")), "s")
            for n in self.cycles)])  # fmt: skip
        rows.append(["simulator alone, cached", *(
            _fmt(self.simulator.get(f"{n}_cached", {}).get("seconds", float("nan")), "s")
            for n in self.cycles)])  # fmt: skip
        out = [
            f"Scale `{self.scale}` on {self.dialect}, cold cycle at {self.cold_at} (Caracas); "
            f"machine {self.machine}; {self.load}",
            "",
            markdown_table(header, rows),
            f"\nSimulator process peak memory: {self.simulator_peak_mb:.0f} MB.",
        ]
        if self.baselines:
            out += ["", self._baseline_markdown()]
        return "\n".join(out)

    def _baseline_markdown(self) -> str:
        lines = [f"Baseline run after the {after} cycle, loading the cold cycle's rows: "
                 f"{b['wall_s']:.2f} s wall, {b['cpu_s']:.2f} s CPU (client "
                 f"{b['client_cpu_s']:.2f} s + PostgreSQL {b['db_cpu_s']:.2f} s), "
                 f"{b['rows']:,.0f} rows; then the steady cycle's rows on top: "
                 f"{b['steady_wall_s']:.2f} s wall, {b['steady_cpu_s']:.2f} s CPU, "
                 f"{b['steady_rows']:,.0f} rows; load average {b['load_1m']:.2f}."
                 for after, b in self.baselines.items()]  # fmt: skip
        for name, r in self.against_baseline().items():
            cycle = self.cycles[name]
            lines.append(
                f"**{name} cycle / baseline loading its rows (median of {len(self.baselines)})**:"
                f" wall {times(r['wall_x'])} (target ≤ 3×: {cycle['wall_s']:.2f} s against "
                f"{r['baseline_wall_s']:.2f} s); the cycle's time beyond that load (extraction, "
                f"decoding, bookkeeping and our load's own excess) {times(r['beyond_load_x'])} "
                f"it (target ≤ 2×); CPU "
                f"{times(r['cpu_x'])} (ETL + its backends {cycle['total_cpu_s']:.2f} s vs "
                f"baseline {r['baseline_cpu_s']:.2f} s)."
            )
        return "\n".join(lines)


def _fmt(value: float, kind: str) -> str:
    if value != value:
        return "—"
    return {
        "s": f"{value:.2f} s",
        "n": f"{value:,.0f}",
        "x": f"{value:.2f}×",
        "mb": f"{value:.0f} MB",
        "n2": f"{value:.2f}",
    }[kind]


@contextmanager
def database(dialect: str, workdir: Path) -> Iterator[str]:
    if dialect == "postgresql":
        with bench_database("cycle") as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'cycle.db'}"


def _local_time(text: str) -> datetime:
    """``HH:MM`` → that time (Caracas) on the benchmark's day."""
    try:
        hour, minute = (int(part) for part in text.split(":"))
        return COLD_AT.replace(hour=hour, minute=minute)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM (e.g. 15:00), got {text!r}") from None


def run(
    scale_name: str, dialect: str, *, with_baseline: bool = True, cold_at: datetime = COLD_AT
) -> CycleReport:
    scale = SCALES[scale_name]
    before = os.getloadavg()[0]
    report = CycleReport(scale_name, dialect, machine(), cold_at=cold_at.strftime("%H:%M"))
    sims = build_locations(scale.locations)
    locations = [s.location for s in sims]
    workers = Settings().concurrency
    steady_at = cold_at + (STEADY_AT - COLD_AT)
    # The simulator sells from the cold cycle's day on: the cold window is that day.
    sim_args = ["--history-from", cold_at.date().isoformat()]
    with (
        tempfile.TemporaryDirectory(prefix="fluxion-cycle-") as tmp,
        simulator_process(
            locations=scale.locations, skus=scale.skus, lines_per_day=scale.lines_per_day,
            clock=f"manual:{cold_at.isoformat()}", extra_args=sim_args, startup_timeout=120,
        ) as sim,
        database(dialect, Path(tmp)) as url,
    ):  # fmt: skip
        config = Path(tmp) / "chain.toml"
        config.write_text(chain_config_toml(tuple(sims)))
        migrate(url)
        cold_rows_of = [loc.id for loc in locations]
        for name, at, watermark in (("cold", cold_at, None), ("steady", steady_at, cold_at)):
            set_sim_clock(sim.url, at)
            for attempt in ("first", "cached"):
                report.simulator[f"{name}_{attempt}"] = simulator_alone(
                    sim.url, locations, at, watermark, workers
                )
            load_1m = os.getloadavg()[0]
            report.cycles[name] = summarise(etl_cycle(url, sim.url, config, at))
            report.cycles[name]["load_1m"] = load_1m
            if dialect == "postgresql" and with_baseline:  # right after the cycle, each time
                steady_since = cold_at + (STEADY_SALES_SINCE - COLD_AT)
                report.baselines[name] = baseline_on_rows_of(
                    url, cold_rows_of, steady_since, at=cold_at
                )
        report.simulator_peak_mb = process_peak_mb(sim.process.pid)
    report.load = load_note(before, os.getloadavg()[0])
    return report


def main(argv: Sequence[str] | None = None) -> CycleReport:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cycle",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="chain")
    parser.add_argument("--dialect", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--cold-at",
        type=_local_time,
        default=COLD_AT.strftime("%H:%M"),
        help="the cold cycle's local time (Caracas) on the benchmark's day, HH:MM "
        "(default %(default)s, stores closed; 15:00: open); the steady cycle is 30 minutes later",
    )
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    report = run(args.scale, args.dialect, with_baseline=not args.no_baseline, cold_at=args.cold_at)
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
