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
import sqlite3
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


# --- batch by batch ------------------------------------------------------------------------------

# Loads one batch (index ``i`` of a phase) of one target in one transaction; returns nothing.
BatchLoader = Callable[[str, str, int], None]


def _ours_batches(engine: Engine, data: Data) -> BatchLoader:
    def load(target: str, phase: str, i: int) -> None:
        with engine.begin() as conn:
            if target == "inventory":
                b = data.inventory[phase][i]
                load_inventory(
                    conn, location_id=b.location_id, warehouse_code=b.warehouse_code,
                    items=b.items, run_id=None, now=NOW,
                )  # fmt: skip
            else:
                s = data.sales[phase][i]
                load_sales(conn, location_id=s.location_id, lines=s.lines, run_id=None, now=NOW)

    return load


def _baseline_batches(
    conn: psycopg.Connection[Any], rows: dict[tuple[str, str], Any]
) -> BatchLoader:
    def load(target: str, phase: str, i: int) -> None:
        batch = [rows[(target, phase)][i]]
        if target == "inventory":
            baseline.load_inventory(conn, batch, NOW)
        else:
            baseline.load_sales(conn, batch, NOW)

    return load


def _plain_sqlite_batches(
    conn: sqlite3.Connection, rows: dict[tuple[str, str], Any]
) -> BatchLoader:
    def load(target: str, phase: str, i: int) -> None:
        batch = [rows[(target, phase)][i]]
        if target == "inventory":
            peers.sqlite_executemany_inventory_on(conn, batch, NOW)
        else:
            peers.sqlite_executemany_sales_on(conn, batch, NOW)

    return load


def measure_interleaved(dialect: str, data: Data, repeats: int, targets: Sequence[str]) -> Results:
    """Ours and the one contender the target compares it with (PostgreSQL: the baseline;
    SQLite: the plain ``executemany`` upsert), each in a database of its own, batch by batch:
    every transaction of ours is timed right beside the same transaction of the other, the
    order alternating, so both meet the same moments of a shared machine."""
    other = "baseline COPY + merge" if dialect == "postgresql" else "executemany upsert"
    rows = {
        (target, phase): (data.inventory_rows if target == "inventory" else data.sales_rows)(phase)
        for target in targets
        for phase in PHASES
    }
    results: Results = defaultdict(list)
    for _repeat in range(repeats):
        for target in targets:
            with _interleaved_pair(dialect, data, rows) as (urls, loaders):
                for phase in PHASES:
                    for url in urls:
                        checkpoint(url)
                    took = _time_batches(loaders, target, phase, len(rows[(target, phase)]))
                    for name, seconds_taken in zip(("ours", other), took, strict=True):
                        results[(target, name, phase)].append(seconds_taken)
                    progress(
                        f"{target} {phase}: ours {took[0]:.2f} s, {other} {took[1]:.2f} s "
                        f"({took[0] / took[1]:.2f}x)"
                    )
    return results


def _time_batches(
    loaders: Sequence[BatchLoader], target: str, phase: str, count: int
) -> list[float]:
    took = [0.0] * len(loaders)
    for i in range(count):
        order = range(len(loaders)) if i % 2 == 0 else reversed(range(len(loaders)))
        for k in order:
            with stopwatch() as elapsed:
                loaders[k](target, phase, i)
            took[k] += elapsed()
    return took


@contextmanager
def _interleaved_pair(
    dialect: str, data: Data, rows: dict[tuple[str, str], Any]
) -> Iterator[tuple[list[str], list[BatchLoader]]]:
    """Two fresh, migrated databases: one for ours, one for the other contender."""
    if dialect == "postgresql":
        with bench_database("load_ours") as ours_url, bench_database("load_other") as other_url:
            for url in (ours_url, other_url):
                migrate(url)
            engine = _warm_engine(ours_url)
            try:
                with psycopg.connect(plain_dsn(other_url)) as conn:
                    loaders = [_ours_batches(engine, data), _baseline_batches(conn, rows)]
                    yield [ours_url, other_url], loaders
            finally:
                engine.dispose()
        return
    peers.register_sqlite_adapters()
    with tempfile.TemporaryDirectory(prefix="fluxion-bench-") as tmp:
        ours_file, plain_file = Path(tmp) / "ours.db", Path(tmp) / "plain.db"
        for path in (ours_file, plain_file):
            migrate(f"sqlite:///{path}")
        engine = _warm_engine(f"sqlite:///{ours_file}")
        conn = peers.sqlite_connection(plain_file)
        try:
            yield [], [_ours_batches(engine, data), _plain_sqlite_batches(conn, rows)]
        finally:
            conn.close()
            engine.dispose()


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
    interleave: bool = False,
) -> Report:
    scale = SCALES[scale_name]
    data = generate(scale)
    before = os.getloadavg()[0]
    report = Report(machine(), scale_name, data.counts(), {})
    with_dlt = with_dlt and peers.dlt_available()
    for dialect in dialects:
        if interleave:
            report.results[dialect] = measure_interleaved(dialect, data, repeats, targets)
        elif dialect == "postgresql":
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
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="ours and its target contender only (PostgreSQL: the baseline; SQLite: executemany),"
        " each in its own database, timed transaction by transaction side by side",
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
        interleave=args.interleave,
    )
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
