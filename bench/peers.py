"""The peers the loader is compared with, each written the way its users write it.

* ``executemany`` upserts (psycopg 3 on PostgreSQL, the standard ``sqlite3`` on SQLite): one
  ``INSERT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM`` per row, batched by the driver.
* dlt with ``write_disposition="merge"`` into the same PostgreSQL, defaults otherwise (its own
  dataset schema; dlt creates its tables on the first run).

Every peer gets the rows as ready tuples (or dicts for dlt) built before the clock starts, and
loads one transaction (one ``pipeline.run`` for dlt) per batch, as the loader does. Neither
writes inventory history; the tables note that where it matters.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.baseline_copy_merge import INVENTORY_COLUMNS, SALES_COLUMNS, SALES_KEY, SALES_VALUES
from bench.common import stopwatch

SalesRows = Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
InventoryRows = Sequence[tuple[str, str, Sequence[tuple[Any, ...]]]]
INVENTORY_VALUES = INVENTORY_COLUMNS[1:]


def _placeholders(count: int, mark: str) -> str:
    return ", ".join([mark] * count)


def _sales_upsert(mark: str, distinct: str, excluded: str) -> str:
    names = ("location_id", *SALES_COLUMNS, "loaded_at")
    sets = ", ".join(f"{c} = {excluded}.{c}" for c in (*SALES_VALUES, "loaded_at"))
    differs = " OR ".join(f"sales_lines.{c} {distinct} {excluded}.{c}" for c in SALES_VALUES)
    return (
        f"INSERT INTO sales_lines ({', '.join(names)}) VALUES ({_placeholders(len(names), mark)}) "
        f"ON CONFLICT (location_id, {', '.join(SALES_KEY)}) DO UPDATE SET {sets} WHERE {differs}"
    )


def _inventory_upsert(mark: str, distinct: str, excluded: str) -> str:
    names = ("location_id", "warehouse_code", *INVENTORY_COLUMNS, "updated_at")
    sets = ", ".join(f"{c} = {excluded}.{c}" for c in (*INVENTORY_VALUES, "updated_at"))
    differs = " OR ".join(
        f"inventory_current.{c} {distinct} {excluded}.{c}" for c in INVENTORY_VALUES
    )
    return (
        f"INSERT INTO inventory_current ({', '.join(names)}) "
        f"VALUES ({_placeholders(len(names), mark)}) "
        f"ON CONFLICT (location_id, warehouse_code, sku) DO UPDATE SET {sets} WHERE {differs}"
    )


# --- psycopg executemany --------------------------------------------------------------------------


def pg_executemany_sales(dsn: str, batches: SalesRows, at: datetime) -> None:
    sql = _sales_upsert("%s", "IS DISTINCT FROM", "EXCLUDED")
    with psycopg.connect(dsn) as conn:
        for location, rows in batches:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, [(location, *row, at) for row in rows])


def pg_executemany_inventory(dsn: str, batches: InventoryRows, at: datetime) -> None:
    sql = _inventory_upsert("%s", "IS DISTINCT FROM", "EXCLUDED")
    with psycopg.connect(dsn) as conn:
        for location, warehouse, rows in batches:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, [(location, warehouse, *row, at) for row in rows])


# --- sqlite3 executemany --------------------------------------------------------------------------


def sqlite_connection(path: Path) -> sqlite3.Connection:
    """WAL and synchronous=NORMAL, as the product's engine sets them; explicit transactions."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def register_sqlite_adapters() -> None:
    """What a plain ``sqlite3`` user adds: Decimal as text, aware times as UTC text."""
    sqlite3.register_adapter(Decimal, str)
    sqlite3.register_adapter(datetime, lambda v: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))
    sqlite3.register_adapter(date, date.isoformat)


def sqlite_executemany_sales(path: Path, batches: SalesRows, at: datetime) -> None:
    conn = sqlite_connection(path)
    try:
        sqlite_executemany_sales_on(conn, batches, at)
    finally:
        conn.close()


def sqlite_executemany_sales_on(conn: sqlite3.Connection, batches: SalesRows, at: datetime) -> None:
    sql = _sales_upsert("?", "IS NOT", "excluded")
    for location, rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(location, *row, at) for row in rows])
        conn.execute("COMMIT")


def sqlite_executemany_inventory(path: Path, batches: InventoryRows, at: datetime) -> None:
    conn = sqlite_connection(path)
    try:
        sqlite_executemany_inventory_on(conn, batches, at)
    finally:
        conn.close()


def sqlite_executemany_inventory_on(
    conn: sqlite3.Connection, batches: InventoryRows, at: datetime
) -> None:
    sql = _inventory_upsert("?", "IS NOT", "excluded")
    for location, warehouse, rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(location, warehouse, *row, at) for row in rows])
        conn.execute("COMMIT")


# --- dlt ------------------------------------------------------------------------------------------


def dlt_available() -> bool:
    try:
        import dlt  # noqa: F401
    except ImportError:
        return False
    return True


class DltMerge:
    """One dlt pipeline into ``dsn``; ``run`` merges one batch of dicts (one dlt load)."""

    def __init__(self, dsn: str, workdir: Path, name: str) -> None:
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no traffic off this machine
        import dlt

        self._dlt = dlt
        self.pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.postgres(credentials=_with_password(dsn)),
            dataset_name="dlt_bench",
            pipelines_dir=str(workdir),
            progress=None,
        )

    def run(self, rows: list[dict[str, Any]], table: str, key: Sequence[str]) -> None:
        self.pipeline.run(rows, table_name=table, write_disposition="merge", primary_key=key)

    def drop(self) -> None:
        self.pipeline.drop()


def _with_password(dsn: str) -> str:
    """dlt insists on a password; the server trusts loopback, so any placeholder does."""
    scheme, _, rest = dsn.partition("://")
    user, at, host = rest.partition("@")
    return dsn if not at or ":" in user else f"{scheme}://{user}:trust@{host}"


def dlt_sales(merge: DltMerge, batches: SalesRows, at: datetime) -> float:
    """Seconds spent in ``pipeline.run`` (the dicts are built outside the clock)."""
    names = ("location_id", *SALES_COLUMNS, "loaded_at")
    total = 0.0
    for location, rows in batches:
        dicts = [dict(zip(names, (location, *row, at), strict=True)) for row in rows]
        with stopwatch() as elapsed:
            merge.run(dicts, "sales_lines", ("location_id", *SALES_KEY))
        total += elapsed()
    return total


def dlt_inventory(merge: DltMerge, batches: InventoryRows, at: datetime) -> float:
    names = ("location_id", "warehouse_code", *INVENTORY_COLUMNS, "updated_at")
    total = 0.0
    for location, warehouse, rows in batches:
        dicts = [dict(zip(names, (location, warehouse, *row, at), strict=True)) for row in rows]
        with stopwatch() as elapsed:
            merge.run(dicts, "inventory_current", ("location_id", "warehouse_code", "sku"))
        total += elapsed()
    return total
