"""Invariants on the data: the product's tables against the simulator's truth.

    sales_exactly_once        every line the simulator sold (and did not void) is stored once,
                              with its values; nothing else is stored
    voided_lines_gone         every voided line is gone; no deletion is left held back
    sales_day_totals          per location and local day: line count, USD and Bs totals
    inventory_current         current stock and price equal the simulator's last catalogue
    inventory_history         one history row per real change, chained old -> new, ending at the
                              current stock
    coverage_complete         no opening-hours stretch up to the watermark is uncovered or only
                              provisionally covered

Sales are checked from the first day loaded (local midnight of the day before the soak began) up
to each location's sales watermark less a minute: what the last successful run read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import Connection, select

from fluxion_etl.domain.intervals import Interval
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.windows import local_date, local_midnight, opening_intervals
from fluxion_etl.soak.truth import DayTruth, SimControl
from fluxion_etl.soak.verdict import Findings
from fluxion_etl.store import coverage
from fluxion_etl.store.schema import (
    held_deletions,
    inventory_current,
    inventory_history,
    sales_lines,
    sync_state,
)

CUTOFF_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class StoredLine:
    key: tuple[str, int]
    day: date
    local_time: time
    sku: str
    warehouse_code: str
    quantity: Decimal
    total_usd: Decimal
    total_bs: Decimal


def sales_cutoffs(conn: Connection, locations: Sequence[Location]) -> dict[str, datetime | None]:
    """Per location with sales: up to where its sales were read (watermark less a margin)."""
    rows = conn.execute(
        select(sync_state.c.location_id, sync_state.c.watermark).where(sync_state.c.job == "sales")
    ).all()
    marks = {str(r.location_id): r.watermark for r in rows}
    return {
        loc.id: (marks[loc.id] - CUTOFF_MARGIN if marks.get(loc.id) else None)
        for loc in locations
        if loc.has_sales
    }


def check_sales(
    findings: Findings,
    conn: Connection,
    sim: SimControl,
    locations: Sequence[Location],
    *,
    first_day: date,
    cutoffs: dict[str, datetime | None],
) -> None:
    voided = {(v.location_id, v.key) for v in sim.voids()}
    for loc in locations:
        cutoff = cutoffs.get(loc.id)
        if cutoff is None:
            continue
        stored = _stored_by_day(conn, loc, cutoff)
        last_day = local_date(cutoff, loc.zone)
        days = sorted({*_days(first_day, last_day), *stored})
        for day in days:
            truth = _truth_until(sim.sales(loc.id, day), cutoff, loc, last_day)
            _compare_day(
                findings,
                location_id=loc.id,
                day=day,
                truth=truth,
                stored=stored.get(day, []),
                voided=voided,
            )
    _check_voids(findings, conn, sim)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _stored_by_day(
    conn: Connection, loc: Location, cutoff: datetime
) -> dict[date, list[StoredLine]]:
    c = sales_lines.c
    query = select(
        c.invoice_number, c.line_number, c.sold_at, c.business_day, c.sku, c.warehouse_code,
        c.quantity, c.total_usd, c.total_bs,
    ).where(c.location_id == loc.id, c.sold_at < cutoff)  # fmt: skip
    out: dict[date, list[StoredLine]] = defaultdict(list)
    for row in conn.execute(query):
        local = row.sold_at.astimezone(loc.zone)
        out[local.date()].append(
            StoredLine(
                key=(row.invoice_number, int(row.line_number)),
                day=row.business_day,
                local_time=local.time().replace(tzinfo=None),
                sku=row.sku,
                warehouse_code=row.warehouse_code,
                quantity=row.quantity,
                total_usd=row.total_usd,
                total_bs=row.total_bs,
            )
        )
    return out


def _truth_until(truth: DayTruth, cutoff: datetime, loc: Location, last_day: date) -> DayTruth:
    """The day's truth, cut at the cutoff on the last (partial) day."""
    if truth.day != last_day:
        return truth
    limit = cutoff.astimezone(loc.zone).time().replace(tzinfo=None)
    lines = {key: line for key, line in truth.lines.items() if line.local_time < limit}
    return DayTruth(
        truth.location_id,
        truth.day,
        lines,
        sum((line.total_usd for line in lines.values()), Decimal(0)),
        sum((line.total_bs for line in lines.values()), Decimal(0)),
    )


def _compare_day(
    findings: Findings,
    *,
    location_id: str,
    day: date,
    truth: DayTruth,
    stored: list[StoredLine],
    voided: set[tuple[str, tuple[str, int]]],
) -> None:
    where = f"{location_id} {day}"
    by_key: dict[tuple[str, int], list[StoredLine]] = defaultdict(list)
    for line in stored:
        by_key[line.key].append(line)
    findings.count("sales lines compared", len(truth.lines))
    for key, sold in truth.lines.items():
        copies = by_key.get(key, [])
        if len(copies) != 1:
            findings.fail("sales_exactly_once", f"{where} line {key}: stored {len(copies)} times")
            continue
        wrong = _differences(sold, copies[0], day)
        if wrong:
            findings.fail("sales_exactly_once", f"{where} line {key}: {wrong}")
    for key in by_key.keys() - truth.lines.keys():
        if (location_id, key) not in voided:  # voided ones are reported by voided_lines_gone
            findings.fail("sales_exactly_once", f"{where} line {key}: stored, never sold")
    count = len(stored)
    usd = sum((line.total_usd for line in stored), Decimal(0))
    bs = sum((line.total_bs for line in stored), Decimal(0))
    findings.count("day totals compared")
    if (count, usd, bs) != (len(truth.lines), truth.total_usd, truth.total_bs):
        findings.fail(
            "sales_day_totals",
            f"{where}: stored {count} lines, {usd} USD, {bs} Bs; the simulator sold "
            f"{len(truth.lines)} lines, {truth.total_usd} USD, {truth.total_bs} Bs",
        )


def _differences(truth: object, stored: StoredLine, day: date) -> str:
    wanted = {
        name: getattr(truth, name)
        for name in ("sku", "warehouse_code", "local_time", "quantity", "total_usd", "total_bs")
    }
    wrong = [f"{name} {getattr(stored, name)} != {value}" for name, value in wanted.items()
             if getattr(stored, name) != value]  # fmt: skip
    if stored.day != day:
        wrong.append(f"business_day {stored.day} != {day}")
    return "; ".join(wrong)


def _check_voids(findings: Findings, conn: Connection, sim: SimControl) -> None:
    voids = sim.voids()
    findings.count("voided lines checked", len(voids))
    c = sales_lines.c
    for void in voids:
        present = conn.execute(
            select(c.id).where(
                c.location_id == void.location_id,
                c.invoice_number == void.key[0],
                c.line_number == void.key[1],
            )
        ).first()
        if present is not None:
            findings.fail(
                "voided_lines_gone", f"{void.location_id} {void.day} line {void.key} still stored"
            )
    held = conn.execute(
        select(held_deletions).where(held_deletions.c.resolved_at.is_(None))
    ).mappings()
    for row in held:
        findings.fail(
            "voided_lines_gone",
            f"{row['location_id']} {row['subject']}: deletion of {row['would_delete']} of "
            f"{row['total']} held back (run {row['run_id']}) and never resolved",
        )


# --- inventory --------------------------------------------------------------------------------


def check_inventory(
    findings: Findings, conn: Connection, sim: SimControl, locations: Sequence[Location]
) -> None:
    for loc in locations:
        for warehouse in loc.warehouses:
            truth = sim.last_catalogue(warehouse.code)
            where = f"{loc.id} {warehouse.code}"
            if truth is None:
                findings.fail("inventory_current", f"{where}: the simulator never served it")
                continue
            c = inventory_current.c
            rows = conn.execute(
                select(c.sku, c.stock, c.price_usd).where(
                    c.location_id == loc.id, c.warehouse_code == warehouse.code
                )
            ).all()
            stored = {row.sku: (row.stock, row.price_usd) for row in rows}
            findings.count("inventory items compared", len(truth))
            for sku in truth.keys() - stored.keys():
                findings.fail("inventory_current", f"{where} {sku}: missing")
            for sku in stored.keys() - truth.keys():
                findings.fail("inventory_current", f"{where} {sku}: not in the catalogue")
            for sku in truth.keys() & stored.keys():
                want = (truth[sku].stock, truth[sku].price_usd)
                if stored[sku] != want:
                    findings.fail(
                        "inventory_current",
                        f"{where} {sku}: stock/price {stored[sku]} != simulator {want}",
                    )
    _check_history(findings, conn)


def _check_history(findings: Findings, conn: Connection) -> None:
    """Per article: appeared first, then only real changes, each starting where the last ended,
    and the last one equal to the current stock."""
    h = inventory_history.c
    rows = conn.execute(
        select(h.location_id, h.warehouse_code, h.sku, h.change, h.old_stock, h.new_stock).order_by(
            h.location_id, h.warehouse_code, h.sku, h.changed_at, h.id
        )
    ).all()
    current = {
        (r.location_id, r.warehouse_code, r.sku): r.stock
        for r in conn.execute(
            select(
                inventory_current.c.location_id,
                inventory_current.c.warehouse_code,
                inventory_current.c.sku,
                inventory_current.c.stock,
            )
        )
    }
    findings.count("history rows checked", len(rows))
    chains: dict[tuple[str, str, str], list[tuple[str, Decimal | None, Decimal | None]]] = (
        defaultdict(list)
    )
    for r in rows:
        chains[(r.location_id, r.warehouse_code, r.sku)].append(
            (r.change, r.old_stock, r.new_stock)
        )
    for item, chain in chains.items():
        problem = _chain_problem(chain, current.get(item))
        if problem:
            findings.fail("inventory_history", f"{' '.join(item)}: {problem}")
    for item in current.keys() - chains.keys():
        findings.fail("inventory_history", f"{' '.join(item)}: current stock with no history")


def _chain_problem(
    chain: list[tuple[str, Decimal | None, Decimal | None]], current: Decimal | None
) -> str | None:
    previous: Decimal | None = None
    for index, (change, old, new) in enumerate(chain):
        if index == 0 and change != "appeared":
            return f"first row is {change!r}, not 'appeared'"
        if index > 0 and change == "appeared" and previous is not None:
            return f"row {index + 1} 'appeared' again"
        if change == "changed" and old == new:
            return f"row {index + 1} records no change ({old} -> {new})"
        if index > 0 and old != previous:
            return f"row {index + 1} starts at {old}, the previous ended at {previous}"
        previous = new
    if current is not None and previous != current:
        return f"history ends at {previous}, current stock is {current}"
    return None


# --- coverage ---------------------------------------------------------------------------------


def check_coverage(
    findings: Findings,
    conn: Connection,
    locations: Sequence[Location],
    *,
    first_day: date,
    cutoffs: dict[str, datetime | None],
) -> None:
    for loc in locations:
        cutoff = cutoffs.get(loc.id)
        if cutoff is None:
            continue
        start = local_midnight(first_day, loc.zone)
        opening = [
            Interval(lo, hi)
            for lo, hi in opening_intervals(loc.opening_hours, start, cutoff, loc.zone)
        ]
        findings.count("opening-hours stretches checked", len(opening))
        for gap in coverage.uncovered(conn, location_id=loc.id, within=opening):
            kind = "only provisionally covered" if gap.provisional else "uncovered"
            zone = loc.zone
            findings.fail(
                "coverage_complete",
                f"{loc.id} {gap.start.astimezone(zone):%a %H:%M}-{gap.end.astimezone(zone):%H:%M}"
                f" local is {kind}",
            )
