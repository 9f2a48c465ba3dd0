"""``python -m bench.growth`` (PostgreSQL only; minutes; not run in CI): how a cycle's cost grows.

    locations   the cold and steady cycles of bench.cycle for 20, 50, 100, 200 locations (chain
                sizes per location: 4,000 articles, 2,000 lines a day), and the ETL's peak memory
    history     the steady *sales* cycle (the 30-minute incremental one) on a sales table without
                history and on one with ``--history-rows`` older lines generated in SQL; median of 3

One simulator process serves every location count (a configuration lists the first N).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    REPEATS,
    bench_database,
    exit_cleanly_on_sigterm,
    load_note,
    machine,
    markdown_table,
    migrate,
    plain_dsn,
    ratio,
    stopwatch,
    times,
)
from bench.cycle import (
    COLD_AT,
    HISTORY_FROM,
    STEADY_AT,
    etl_cycle,
    set_sim_clock,
    summarise,
)
from fluxion_etl.sim.server import simulator_process
from fluxion_etl.sim.topology import build_locations, chain_config_toml

# Old lines, spread over the locations and the days before the simulator's first day. Every
# column the product reads is filled; text repeats as a real table's does.
HISTORY_SQL = """
INSERT INTO sales_lines (
    location_id, invoice_number, line_number, sold_at, business_day, sku, product_description,
    brand, category_code, group_name, subgroup_code, category_name, barcode, warehouse_code,
    warehouse_name, quantity, unit_weight, gross_weight, unit_volume, sales_unit, unit_factor,
    quantity_in_units, computed_weight, unit_cost_bs, unit_cost_usd, unit_price_bs,
    unit_price_usd, tax_rate, tax_amount_bs, discount_rate, discount_amount_bs, total_bs,
    total_usd, total_cost_bs, total_cost_usd, gross_profit_bs, gross_profit_usd,
    invoice_total_bs, exchange_rate, is_non_fiscal, has_promotion, loaded_at)
SELECT loc.id, 'H' || (g / 5)::text, (g %% 5) + 1,
       %(first)s::timestamptz - make_interval(secs => g * %(seconds_per_line)s),
       (%(first)s::timestamptz - make_interval(secs => g * %(seconds_per_line)s))::date,
       lpad((g %% 15000)::text, 6, '0'), 'ARTICULO ' || (g %% 15000), 'MARCA', '01', 'VIVERES',
       '0101', 'HARINAS', '759' || lpad((g %% 15000)::text, 10, '0'), 'TPF', 'PISO DE VENTA',
       1 + g %% 3, 1, 1, 0, 'UNIDAD', 1, 1 + g %% 3, 1,
       (g %% 9000) / 100.0 + 10, (g %% 300) / 100.0,
       (g %% 9000) / 100.0 + 20, (g %% 300) / 100.0 + 1, 16, 3.2, 0, 0, (g %% 9000) / 10.0,
       (g %% 300) / 10.0, (g %% 9000) / 12.0, (g %% 300) / 12.0, 5, 1, (g %% 90000) / 10.0, 36.5,
       false, false, now()
FROM generate_series(0, %(rows)s - 1) AS g
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM unnest(%(ids)s::text[]) AS id)
     AS loc ON loc.n = g %% %(locations)s
"""


def fill_history(url: str, location_ids: Sequence[str], rows: int) -> float:
    """``rows`` old sales lines, with the indexes rebuilt once at the end (much faster than
    maintaining them row by row); then ANALYZE. Returns the seconds it took."""
    per_day = 2_000 * len(location_ids)
    params: dict[str, Any] = {
        "first": (COLD_AT - timedelta(days=1)).isoformat(),
        "seconds_per_line": 86_400 / per_day,
        "rows": rows,
        "ids": list(location_ids),
        "locations": len(location_ids),
    }
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn, stopwatch() as elapsed:
        constraint = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'uq_sales_lines_key'"
        ).fetchone()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sales_lines' "
            "AND indexname NOT IN ('pk_sales_lines', 'uq_sales_lines_key')"
        ).fetchall()
        conn.execute("ALTER TABLE sales_lines DROP CONSTRAINT uq_sales_lines_key")
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(HISTORY_SQL, params)
        assert constraint is not None
        conn.execute(f"ALTER TABLE sales_lines ADD CONSTRAINT uq_sales_lines_key {constraint[0]}")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE sales_lines")
    return elapsed()


@dataclass
class GrowthReport:
    machine: dict[str, Any]
    by_locations: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    history_rows: int = 0
    history_fill_s: float = 0.0
    incremental: dict[str, list[float]] = field(default_factory=dict)
    load: str = ""

    def markdown(self) -> str:
        out = [f"Machine {self.machine}; {self.load}", ""]
        if self.by_locations:
            rows = []
            first = min(self.by_locations)
            for n, cycles in sorted(self.by_locations.items()):
                cold, steady = cycles["cold"], cycles["steady"]
                per_loc = steady["wall_s"] / n
                base = self.by_locations[first]["steady"]["wall_s"] / first
                rows.append([
                    n, f"{cold['wall_s']:.2f} s", f"{cold['rows']:,.0f}",
                    f"{steady['wall_s']:.2f} s", f"{per_loc * 1000:.0f} ms",
                    times(ratio(per_loc, base)),
                    f"{max(cold['peak_rss_mb'], steady['peak_rss_mb']):.0f} MB",
                ])  # fmt: skip
            out.append(
                markdown_table(
                    ["locations", "cold cycle", "cold rows", "steady cycle",
                     "steady per location", "per location vs first", "ETL peak memory"],
                    rows,
                )
            )  # fmt: skip
        if self.incremental:
            empty = statistics.median(self.incremental["empty"])
            full = statistics.median(self.incremental["history"])
            out.append(
                f"\nIncremental sales cycle (median of {len(self.incremental['empty'])}): "
                f"{empty:.2f} s without history, {full:.2f} s with {self.history_rows:,} older "
                f"lines (generated in {self.history_fill_s:.0f} s): "
                f"{times(ratio(full, empty))} (target ≤ 1.20×)."
            )
        return "\n".join(out)


def location_growth(
    sim_url: str, counts: Sequence[int], workdir: Path, report: GrowthReport
) -> None:
    sims = build_locations(max(counts))
    for n in counts:
        config = workdir / f"chain-{n}.toml"
        config.write_text(chain_config_toml(tuple(sims[:n])))
        with bench_database(f"growth_{n}") as url:
            migrate(url)
            cycles = {}
            for name, at in (("cold", COLD_AT), ("steady", STEADY_AT)):
                set_sim_clock(sim_url, at)
                cycles[name] = summarise(etl_cycle(url, sim_url, config, at))
            report.by_locations[n] = cycles


def history_growth(
    sim_url: str, locations: int, rows: int, repeats: int, workdir: Path, report: GrowthReport
) -> None:
    """Two databases, one with ``rows`` older lines; each repeat runs the same 30-minute window
    on both, one right after the other, so a busy moment of the machine hits both alike."""
    sims = build_locations(locations)
    config = workdir / "chain-history.toml"
    config.write_text(chain_config_toml(tuple(sims)))
    ids = [s.location.id for s in sims if s.location.has_sales]
    report.history_rows = rows
    with bench_database("growth_empty") as empty, bench_database("growth_history") as history:
        urls = {"empty": empty, "history": history}
        for url in urls.values():
            migrate(url)
        report.history_fill_s = fill_history(history, ids, rows)
        set_sim_clock(sim_url, COLD_AT)
        for url in urls.values():
            etl_cycle(url, sim_url, config, COLD_AT, jobs="sales")  # watermarks, untimed
        for k in range(repeats):
            at = STEADY_AT + timedelta(minutes=30 * k)
            set_sim_clock(sim_url, at)
            order = list(urls.items()) if k % 2 == 0 else list(reversed(urls.items()))
            for variant, url in order:
                cycle = summarise(etl_cycle(url, sim_url, config, at, jobs="sales"))
                report.incremental.setdefault(variant, []).append(cycle["wall_s"])


def run(
    counts: Sequence[int],
    history_rows: int,
    *,
    skus: int = 4_000,
    lines: int = 2_000,
    history_locations: int = 20,
    repeats: int = REPEATS,
) -> GrowthReport:
    before = os.getloadavg()[0]
    report = GrowthReport(machine())
    most = max([*counts, history_locations])
    sim_args = ["--history-from", HISTORY_FROM.isoformat()]
    with (
        tempfile.TemporaryDirectory(prefix="fluxion-growth-") as tmp,
        simulator_process(
            locations=most, skus=skus, lines_per_day=lines,
            clock=f"manual:{COLD_AT.isoformat()}", extra_args=sim_args, startup_timeout=120,
        ) as sim,
    ):  # fmt: skip
        if counts:
            location_growth(sim.url, counts, Path(tmp), report)
        if history_rows:
            history_growth(sim.url, history_locations, history_rows, repeats, Path(tmp), report)
    report.load = load_note(before, os.getloadavg()[0])
    return report


def main(argv: Sequence[str] | None = None) -> GrowthReport:
    parser = argparse.ArgumentParser(
        prog="python -m bench.growth",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--locations", default="20,50,100,200", help="comma-separated; '' skips")
    parser.add_argument("--history-rows", type=int, default=20_000_000, help="0 skips")
    parser.add_argument("--skus", type=int, default=4_000)
    parser.add_argument("--lines", type=int, default=2_000)
    parser.add_argument("--history-locations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    counts = [int(n) for n in args.locations.split(",") if n.strip()]
    report = run(
        counts,
        args.history_rows,
        skus=args.skus,
        lines=args.lines,
        history_locations=args.history_locations,
        repeats=args.repeats,
    )
    print(report.markdown())
    return report


if __name__ == "__main__":
    main()
