"""``python -m bench.load``: the load stage alone, ours against the baseline and the peers.

On identical generated rows, in one run, with one transaction per batch for everyone:

    ours           store.inventory_loader.load_inventory / store.sales_loader.load_sales
    baseline       bench/baseline_copy_merge.py (COPY + one set-based merge; shares no code)
    executemany    psycopg 3 (PostgreSQL) or sqlite3 (SQLite) executemany upsert
    dlt            dlt 1.x, write_disposition="merge", into the same PostgreSQL

Phases: ``first`` (empty tables), ``reload`` (the same batches, 2 % of rows changed) and
``incremental`` (inventory: 0.2 % changed and a few new articles; sales: a scheduled window per
location, half lines already loaded, half new). Each phase is timed from a checkpointed database;
every figure is the median of ``--repeats`` runs, contenders interleaved so a busy moment of the
shared machine does not fall on one of them only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text

from bench import baseline_copy_merge as baseline
from bench import peers
from bench.common import (
    NOW,
    REPEATS,
    InventoryBatch,
    SalesBatch,
    bench_database,
    checkpoint,
    exit_cleanly_on_sigterm,
    incremental_sales,
    inventory_batches,
    last_batch_per_location,
    load_note,
    machine,
    markdown_table,
    median,
    migrate,
    plain_dsn,
    ratio,
    sales_batches,
    seconds,
    stopwatch,
    times,
)
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.inventory_loader import load_inventory
from fluxion_etl.store.sales_loader import load_sales

PHASES = ("first", "reload", "incremental")


@dataclass(frozen=True)
class Scale:
    """Inventory: ``inv_locations`` catalogues of ``skus``. Sales: ``sales_locations`` x ``days``
    batches of ``lines`` (one batch = one location's day = one transaction)."""

    inv_locations: int
    skus: int
    sales_locations: int
    days: int
    lines: int
    window: int  # lines per location in the incremental sales window (half of them new)


SCALES = {
    # The reference figures of the issue: 240,000 inventory rows, 800,000 sales lines, in
    # transactions of the 10x chain's size (a 15,000-article catalogue, a 5,000-line day).
    "reference": Scale(16, 15_000, 16, 10, 5_000, 600),
    "small": Scale(4, 2_000, 4, 2, 1_000, 100),
    "tiny": Scale(2, 50, 2, 1, 40, 10),
}


@dataclass
class Data:
    """Every phase's batches, as records (ours) and as tuples (baseline and peers)."""

    inventory: dict[str, list[InventoryBatch]]
    sales: dict[str, list[SalesBatch]]

    def inventory_rows(self, phase: str) -> list[tuple[str, str, list[tuple[Any, ...]]]]:
        get = attrgetter(*baseline.INVENTORY_COLUMNS)
        return [
            (b.location_id, b.warehouse_code, [get(i) for i in b.items])
            for b in self.inventory[phase]
        ]

    def sales_rows(self, phase: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
        get = attrgetter(*baseline.SALES_COLUMNS)
        return [(b.location_id, [get(line) for line in b.lines]) for b in self.sales[phase]]

    def counts(self) -> dict[str, int]:
        return {
            f"{target} {phase}": sum(len(getattr(b, attr)) for b in batches)
            for target, attr, by_phase in (
                ("inventory", "items", self.inventory),
                ("sales", "lines", self.sales),
            )
            for phase, batches in by_phase.items()
        }


def generate(scale: Scale) -> Data:
    first_sales = sales_batches(scale.sales_locations, scale.days, scale.lines)
    half = scale.window // 2
    return Data(
        inventory={
            "first": inventory_batches(scale.inv_locations, scale.skus),
            "reload": inventory_batches(scale.inv_locations, scale.skus, changed=0.02),
            "incremental": inventory_batches(
                scale.inv_locations, scale.skus, changed=0.002, new=max(1, scale.skus // 1000)
            ),
        },
        sales={
            "first": first_sales,
            "reload": sales_batches(scale.sales_locations, scale.days, scale.lines, changed=0.02),
            "incremental": incremental_sales(last_batch_per_location(first_sales), half, half),
        },
    )


# --- contenders -----------------------------------------------------------------------------------

# A contender loads one phase of one target and returns the seconds its own work took.
Loader = Callable[[str], float]


@dataclass
class Contender:
    name: str
    inventory: Loader | None
    sales: Loader | None
    reset: Callable[[], None]
    teardown: Callable[[], None] = lambda: None
    repeats: int = REPEATS  # at most; dlt takes minutes per phase, once is enough for its ratio


def _ours(url: str, data: Data) -> tuple[Loader, Loader]:
    def inventory(phase: str) -> float:
        engine = _warm_engine(url)
        with stopwatch() as elapsed:
            for batch in data.inventory[phase]:
                with engine.begin() as conn:
                    load_inventory(
                        conn, location_id=batch.location_id, warehouse_code=batch.warehouse_code,
                        items=batch.items, run_id=None, now=NOW,
                    )  # fmt: skip
        engine.dispose()
        return elapsed()

    def sales(phase: str) -> float:
        engine = _warm_engine(url)
        with stopwatch() as elapsed:
            for batch in data.sales[phase]:
                with engine.begin() as conn:
                    load_sales(
                        conn, location_id=batch.location_id, lines=batch.lines, run_id=None, now=NOW
                    )
        engine.dispose()
        return elapsed()

    return inventory, sales


def _warm_engine(url: str) -> Engine:
    """The product's engine with its one connection already open (connecting is not loading)."""
    engine = create_db_engine(url, pool_size=1)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return engine


def _baseline(dsn: str, data: Data, mode: str) -> tuple[Loader, Loader]:
    def inventory(phase: str) -> float:
        rows = data.inventory_rows(phase)
        with psycopg.connect(dsn) as conn, stopwatch() as elapsed:
            baseline.load_inventory(conn, rows, NOW, mode=mode)
        return elapsed()

    def sales(phase: str) -> float:
        rows = data.sales_rows(phase)
        with psycopg.connect(dsn) as conn, stopwatch() as elapsed:
            baseline.load_sales(conn, rows, NOW, mode="copy" if mode == "copy" else "merge")
        return elapsed()

    return inventory, sales


def _executemany_pg(dsn: str, data: Data) -> tuple[Loader, Loader]:
    def inventory(phase: str) -> float:
        rows = data.inventory_rows(phase)
        with stopwatch() as elapsed:
            peers.pg_executemany_inventory(dsn, rows, NOW)
        return elapsed()

    def sales(phase: str) -> float:
        rows = data.sales_rows(phase)
        with stopwatch() as elapsed:
            peers.pg_executemany_sales(dsn, rows, NOW)
        return elapsed()

    return inventory, sales


def _executemany_sqlite(path: Path, data: Data) -> tuple[Loader, Loader]:
    def inventory(phase: str) -> float:
        rows = data.inventory_rows(phase)
        with stopwatch() as elapsed:
            peers.sqlite_executemany_inventory(path, rows, NOW)
        return elapsed()

    def sales(phase: str) -> float:
        rows = data.sales_rows(phase)
        with stopwatch() as elapsed:
            peers.sqlite_executemany_sales(path, rows, NOW)
        return elapsed()

    return inventory, sales


@dataclass
class _DltState:
    merge: peers.DltMerge | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fluxion-dlt-")))


def _dlt(dsn: str, data: Data, repeats: int) -> Contender:
    state = _DltState()

    def current() -> peers.DltMerge:
        if state.merge is None:
            name = f"fluxion_bench_{uuid.uuid4().hex[:6]}"
            state.merge = peers.DltMerge(dsn, state.workdir, name)
        return state.merge

    def reset() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in ("dlt_bench", "dlt_bench_staging"):
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        state.merge = None  # a new pipeline: its local state would think tables exist

    return Contender(
        "dlt merge",
        lambda phase: peers.dlt_inventory(current(), data.inventory_rows(phase), NOW),
        lambda phase: peers.dlt_sales(current(), data.sales_rows(phase), NOW),
        reset,
        lambda: shutil.rmtree(state.workdir, ignore_errors=True),
        repeats,
    )


def postgres_contenders(
    url: str, data: Data, *, with_dlt: bool, dlt_repeats: int = REPEATS
) -> list[Contender]:
    dsn = plain_dsn(url)

    def reset() -> None:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text("TRUNCATE inventory_current, inventory_history, sales_lines RESTART IDENTITY")
            )
        engine.dispose()

    contenders = [
        Contender("ours", *_ours(url, data), reset),
        Contender("baseline COPY + merge", *_baseline(dsn, data, "history"), reset),
        Contender("baseline, merge without history", *_baseline(dsn, data, "merge"), reset),
        Contender("bare COPY into staging", *_baseline(dsn, data, "copy"), reset),
        Contender("executemany upsert", *_executemany_pg(dsn, data), reset),
    ]
    if with_dlt:
        contenders.append(_dlt(dsn, data, dlt_repeats))
    return contenders


def sqlite_contenders(template: Path, workdir: Path, data: Data) -> list[Contender]:
    """Each contender loads into its own copy of the migrated file, fresh for every repeat."""
    peers.register_sqlite_adapters()
    ours_file, plain_file = workdir / "ours.db", workdir / "plain.db"

    def fresh(path: Path) -> Callable[[], None]:
        def reset() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            shutil.copyfile(template, path)

        return reset

    return [
        Contender("ours", *_ours(f"sqlite:///{ours_file}", data), fresh(ours_file)),
        Contender("executemany upsert", *_executemany_sqlite(plain_file, data), fresh(plain_file)),
    ]


def progress(message: str) -> None:
    """One line per measurement on stderr, so a long run shows where it is."""
    print(message, file=sys.stderr, flush=True)


# --- the run --------------------------------------------------------------------------------------

Results = dict[tuple[str, str, str], list[float]]  # (target, contender, phase) -> seconds


def measure(
    contenders: Sequence[Contender],
    url: str | None,
    repeats: int,
    targets: Sequence[str] = ("inventory", "sales"),
) -> Results:
    results: Results = defaultdict(list)
    for repeat in range(repeats):
        for target in targets:
            for contender in contenders:
                load = getattr(contender, target)
                if load is None or repeat >= contender.repeats:
                    continue
                contender.reset()
                for phase in PHASES:
                    if url is not None:
                        checkpoint(url)
                    took = load(phase)
                    results[(target, contender.name, phase)].append(took)
                    progress(f"{target} {contender.name} {phase}: {took:.2f} s")
    for contender in contenders:
        contender.teardown()
    return results


@dataclass
class Report:
    machine: dict[str, Any]
    scale: str
    counts: dict[str, int]
    results: dict[str, Results]  # by dialect
    load: str = ""

    def median(self, dialect: str, target: str, contender: str, phase: str) -> float:
        return median(self.results[dialect].get((target, contender, phase), []))

    def markdown(self) -> str:
        out = [f"Scale `{self.scale}`: " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items())]
        out.append(f"Machine: {self.machine}; {self.load}")
        for dialect, results in self.results.items():
            for target in ("inventory", "sales"):
                if not any(t == target for (t, _c, _p) in results):
                    continue
                out.append(f"\n**{dialect}, {target}** (median seconds; × = time / ours)\n")
                out.append(self._table(dialect, target, results))
        out.append("\n" + self.targets_markdown())
        return "\n".join(out)

    def _table(self, dialect: str, target: str, results: Results) -> str:
        names = list(dict.fromkeys(c for (t, c, _p) in results if t == target))
        rows = []
        for name in names:
            row: list[Any] = [name]
            for phase in PHASES:
                value = self.median(dialect, target, name, phase)
                ours = self.median(dialect, target, "ours", phase)
                row += [seconds(value), times(ratio(value, ours))]
            rows.append(row)
        header = ["contender"] + [f"{p}{suffix}" for p in PHASES for suffix in ("", " ×")]
        return markdown_table(header, rows)

    def targets(self) -> list[tuple[str, float, str, bool]]:
        """(what, measured ratio, target, met) for the issue's load-stage targets."""
        checks: list[tuple[str, float, str, bool]] = []
        if "postgresql" in self.results:
            for target in ("inventory", "sales"):
                for phase in ("first", "reload"):
                    r = ratio(
                        self.median("postgresql", target, "ours", phase),
                        self.median("postgresql", target, "baseline COPY + merge", phase),
                    )
                    if r == r:
                        checks.append(
                            (f"PG {target} {phase}: ours / baseline", r, "≤ 1.3", r <= 1.3)
                        )
                    d = ratio(
                        self.median("postgresql", target, "dlt merge", phase),
                        self.median("postgresql", target, "ours", phase),
                    )
                    if d == d:
                        checks.append((f"PG {target} {phase}: dlt / ours", d, "≥ 8", d >= 8))
        if "sqlite" in self.results:
            for target in ("inventory", "sales"):
                for phase in ("first", "reload"):
                    r = ratio(
                        self.median("sqlite", target, "ours", phase),
                        self.median("sqlite", target, "executemany upsert", phase),
                    )
                    if r == r:
                        checks.append(
                            (f"SQLite {target} {phase}: ours / executemany", r, "≤ 1.3", r <= 1.3)
                        )
        return checks

    def targets_markdown(self) -> str:
        rows = [
            (what, times(r), goal, "met" if ok else "NOT met")
            for what, r, goal, ok in self.targets()
        ]
        return markdown_table(["ratio", "measured", "target", ""], rows)


def _chosen(contenders: list[Contender], only: Sequence[str]) -> list[Contender]:
    return [c for c in contenders if not only or c.name.startswith(tuple(only))]


def run(
    scale_name: str,
    dialects: Sequence[str],
    repeats: int = REPEATS,
    with_dlt: bool = True,
    targets: Sequence[str] = ("inventory", "sales"),
    dlt_repeats: int = REPEATS,
    only: Sequence[str] = (),
) -> Report:
    scale = SCALES[scale_name]
    data = generate(scale)
    before = os.getloadavg()[0]
    report = Report(machine(), scale_name, data.counts(), {})
    with_dlt = with_dlt and peers.dlt_available()
    for dialect in dialects:
        if dialect == "postgresql":
            with bench_database("load") as url:
                migrate(url)
                contenders = postgres_contenders(
                    url, data, with_dlt=with_dlt, dlt_repeats=dlt_repeats
                )
                contenders = _chosen(contenders, only)
                report.results[dialect] = measure(contenders, url, repeats, targets)
        else:
            with tempfile.TemporaryDirectory(prefix="fluxion-bench-") as tmp:
                template = Path(tmp) / "template.db"
                migrate(f"sqlite:///{template}")
                contenders = _chosen(sqlite_contenders(template, Path(tmp), data), only)
                report.results[dialect] = measure(contenders, None, repeats, targets)
    report.load = load_note(before, os.getloadavg()[0])
    return report


def main(argv: Sequence[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="reference")
    parser.add_argument("--dialect", default="postgresql,sqlite", help="comma-separated")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--no-dlt", action="store_true", help="leave dlt out (it is slow)")
    parser.add_argument("--targets", default="inventory,sales", help="comma-separated")
    parser.add_argument("--dlt-repeats", type=int, default=1, help="dlt is slow: fewer repeats")
    parser.add_argument(
        "--only", default="", help="comma-separated name prefixes of contenders (default: all)"
    )
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    report = run(
        args.scale,
        args.dialect.split(","),
        args.repeats,
        with_dlt=not args.no_dlt,
        targets=args.targets.split(","),
        dlt_repeats=args.dlt_repeats,
        only=[p for p in args.only.split(",") if p],
    )
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
