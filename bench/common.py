"""What every benchmark shares: the machine, timing, throwaway databases, generated rows, tables.

Rows are generated once per run and handed to every contender unchanged, so each compares like
with like. Values come from small pools (prices, quantities, names repeat as they do in a real
store), which keeps a million lines in a few hundred MB.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from fluxion_etl.domain.records import CatalogueItem, SalesLine

PG_ADMIN_URL = os.environ.get(
    "FLUXION_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX = "fluxion_bench_"
REPEATS = 3


# --- the machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What a reader needs to compare figures: CPU, cores, memory, load, versions, date."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "postgresql": _pg_version(),
    }


def _pg_version() -> str:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
        engine.dispose()
        return version
    except Exception:
        return "unavailable"


def load_note(before: float, after: float) -> str:
    """How busy the 2-core machine was (other engineers run tests on it too)."""
    cores = os.cpu_count() or 1
    return f"load average {before:.1f} → {after:.1f} on {cores} cores"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far: ``VmHWM``, the peak of its own memory.

    Not ``ru_maxrss``: Linux carries that over from the parent across fork (vfork) and exec, so
    a worker started by a benchmark whose own peak was higher reported the benchmark's peak
    (a 14 MB child of a 514 MB parent reads 514 MB there, 14 MB here)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: KiB or bytes


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process on this machine (0 once it has gone).

    Used for PostgreSQL server processes (loopback): a cycle's or the baseline's CPU includes
    the database's, so the CPU ratio compares whole work, not only the client's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exit_cleanly_on_sigterm() -> None:
    """``kill`` ends a benchmark like Ctrl-C: context managers run, its databases are dropped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- timing ---------------------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is the seconds (frozen on exit)."""
    started = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - started
    end.append(time.perf_counter())


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, other: float) -> float:
    return ours / other if other else float("nan")


# --- databases ------------------------------------------------------------------------------------


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def plain_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…`` for psycopg, dlt and the baseline."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def bench_database(label: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database ``fluxion_bench_<label>_<random>``, dropped afterwards."""
    name = f"{DB_PREFIX}{label}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url(name)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(url: str) -> None:
    """Bring ``url`` to the product's schema (the same tables every contender loads into)."""
    from fluxion_etl.store.db import create_db_engine, upgrade

    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()


def checkpoint(url: str) -> None:
    """Flush dirty buffers so one contender's writes are not paid for by the next one."""
    if url.startswith("sqlite"):
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))
    engine.dispose()


# --- generated rows -------------------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
FIRST_DAY = date(2025, 12, 1)


@dataclass(frozen=True, slots=True)
class InventoryBatch:
    """One transaction of inventory: a location's whole catalogue of one warehouse."""

    location_id: str
    warehouse_code: str
    items: tuple[CatalogueItem, ...]


@dataclass(frozen=True, slots=True)
class SalesBatch:
    """One transaction of sales: one location's lines (a day, or a scheduled window)."""

    location_id: str
    lines: tuple[SalesLine, ...]


class _Pools:
    """Shared value objects: a real store repeats prices, quantities and names constantly."""

    def __init__(self, rng: random.Random) -> None:
        self.qty = [Decimal(n) for n in range(1, 13)] + [
            Decimal(f"{rng.randint(100, 3000) / 1000:.3f}") for _ in range(200)
        ]
        self.price = [Decimal(f"{rng.randint(50, 30000) / 100:.2f}") for _ in range(4000)]
        self.amount = [Decimal(f"{rng.randint(50, 900000) / 100:.2f}") for _ in range(20000)]
        self.rate = [Decimal(f"{3600 + n * 25 + rng.randint(-40, 40)}") / 100 for n in range(60)]
        self.tax = (Decimal(16), Decimal(0))
        self.zero = Decimal(0)


def _article_text(n: int) -> tuple[str, str, str]:
    return (f"{n:06d}", f"ARTICULO {n} 500G", f"759{n:010d}")


def inventory_batches(
    locations: int, skus: int, *, seed: int = 1, changed: float = 0.0, new: int = 0
) -> list[InventoryBatch]:
    """One catalogue per location; ``changed`` of the stock differs from the seed's first load
    (the same rows otherwise) and ``new`` articles per location are added at the end."""
    base = random.Random(seed)
    pools = _Pools(base)
    names = [_article_text(n) for n in range(skus + new)]
    prices = [pools.price[base.randrange(len(pools.price))] for _ in range(skus + new)]
    batches = []
    for loc in range(locations):
        rng = random.Random(f"{seed}:{loc}")
        change = random.Random(f"{seed}:{loc}:change:{changed}")
        items = []
        for n in range(skus + new):
            stock = pools.qty[rng.randrange(len(pools.qty))] if rng.random() < 0.5 else pools.zero
            if changed and change.random() < changed:
                stock = stock + 1
            sku, name, barcode = names[n]
            items.append(
                CatalogueItem(
                    sku=sku, barcode=barcode, name=name, category_code="01",
                    subcategory_code="0101", category_name="VIVERES", subcategory_name="HARINAS",
                    brand=None if n % 3 else "MARCA", price_usd=prices[n],
                    tax_rate=pools.tax[n % 7 == 0], stock=stock,
                )
            )  # fmt: skip
        batches.append(InventoryBatch(f"tienda_{loc + 1:03d}", f"W{loc + 1:03d}", tuple(items)))
    return batches


def sales_batches(
    locations: int,
    days: int,
    lines_per_day: int,
    *,
    seed: int = 1,
    first_day: date = FIRST_DAY,
    changed: float = 0.0,
) -> list[SalesBatch]:
    """One batch per (location, day); ``changed`` of the lines differ in quantity and totals."""
    pools = _Pools(random.Random(seed))
    batches = []
    for d in range(days):
        day = first_day + timedelta(days=d)
        rate = pools.rate[d % len(pools.rate)]
        for loc in range(locations):
            rng = random.Random(f"{seed}:{loc}:{day}")
            change = random.Random(f"{seed}:{loc}:{day}:change:{changed}")
            prints = random.Random(f"{seed}:{loc}:{day}:prints")  # the other draws as before
            lines = []
            for n in range(lines_per_day):
                moved = bool(changed and change.random() < changed)
                # as the decoder gives every line (its bytes hashed): other values, other bytes
                fingerprint = (prints.getrandbits(64) - (1 << 63)) ^ moved
                lines.append(_sales_line(rng, pools, day, rate, n, moved, fingerprint))
            batches.append(SalesBatch(f"tienda_{loc + 1:03d}", tuple(lines)))
    return batches


def _sales_line(
    rng: random.Random,
    p: _Pools,
    day: date,
    rate: Decimal,
    n: int,
    changed: bool,
    fingerprint: int,
) -> SalesLine:
    article = rng.randrange(15000)
    sku, name, barcode = _article_text(article)
    qty = p.qty[rng.randrange(len(p.qty))]
    if changed:
        qty = qty + 1
    total_bs = p.amount[rng.randrange(len(p.amount))]
    total_usd = p.price[rng.randrange(len(p.price))]
    sold = datetime(day.year, day.month, day.day, 11, tzinfo=UTC) + timedelta(
        seconds=n * 50400 // 5000, microseconds=rng.randrange(1_000_000)
    )
    return SalesLine(
        invoice_number=f"C10-{(day - FIRST_DAY).days % 100:02d}-{n // 5:08d}",
        line_number=n % 5 + 1, sold_at=sold, business_day=day, sku=sku,
        product_description=name, brand=None if article % 3 else "MARCA", model=None,
        category_code="01", group_name="VIVERES", subgroup_code="0101", category_name="HARINAS",
        barcode=barcode, serial=None, imei=None, warehouse_code="TPF",
        warehouse_name="PISO DE VENTA", quantity=qty, unit_weight=p.qty[article % 12],
        gross_weight=p.qty[article % 12], unit_volume=p.zero, sales_unit="UNIDAD",
        unit_factor=p.qty[0], quantity_in_units=qty, computed_weight=p.qty[article % 12],
        unit_cost_bs=p.amount[article], unit_cost_usd=p.price[article % 4000],
        unit_price_bs=p.amount[article + 1], unit_price_usd=p.price[(article + 1) % 4000],
        tax_rate=p.tax[article % 7 == 0], tax_amount_bs=p.amount[article + 2],
        discount_rate=p.zero, discount_amount_bs=p.zero, total_bs=total_bs + (1 if changed else 0),
        total_usd=total_usd, total_cost_bs=p.amount[article + 3],
        total_cost_usd=p.price[(article + 3) % 4000], gross_profit_bs=p.amount[article + 4],
        gross_profit_usd=p.price[(article + 4) % 4000],
        invoice_total_bs=p.amount[(n // 5) % 20000], exchange_rate=rate,
        is_non_fiscal=False, has_promotion=False, promotion_code=None, fingerprint=fingerprint,
    )  # fmt: skip


def incremental_sales(batches: Sequence[SalesBatch], overlap: int, new: int) -> list[SalesBatch]:
    """A scheduled window per location: its last ``overlap`` lines again plus ``new`` lines."""
    out = []
    for batch in batches:
        tail = batch.lines[-overlap:] if overlap else ()
        last = batch.lines[-1]
        fresh = tuple(
            replace(
                last,
                invoice_number=f"N{last.invoice_number}-{k // 5:06d}",
                line_number=n,
                fingerprint=None if last.fingerprint is None else last.fingerprint ^ (k + 1) << 1,
            )
            for k in range(new)
            for n in [k % 5 + 1]
        )
        out.append(SalesBatch(batch.location_id, tuple(tail) + fresh))
    return out


def last_batch_per_location(batches: Sequence[SalesBatch]) -> list[SalesBatch]:
    latest: dict[str, SalesBatch] = {}
    for batch in batches:
        latest[batch.location_id] = batch
    return list(latest.values())


# --- reports --------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value == value else "—"


def times(value: float) -> str:
    return f"{value:.2f}×" if value == value else "—"
