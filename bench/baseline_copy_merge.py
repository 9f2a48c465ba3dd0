"""The fixed baseline: COPY into a temporary staging table, then one set-based merge, per
transaction. Plain psycopg 3 and SQL written out by hand; it imports nothing of fluxion_etl, so
it cannot inherit the loader's mistakes. It is what "the practical limit" means in BENCHMARKS.md.

It loads into the product's tables (created beforehand by ``bench.load``) and takes rows as
ready tuples in the column order below, one transaction per batch:

    load_sales(conn, [(location_id, rows), ...], loaded_at)
    load_inventory(conn, [(location_id, warehouse_code, rows), ...], updated_at, mode=...)

Inventory ``mode``:
  ``history`` (default) — the same result as the product: current stock merged, and one history
              row per article that appeared or whose stock changed, in one statement;
  ``merge``   — the merge alone (``INSERT … ON CONFLICT DO UPDATE … WHERE IS DISTINCT FROM``);
  ``copy``    — the COPY into staging alone (the floor: no merge at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

SALES_KEY = ("invoice_number", "line_number")
SALES_VALUES = (
    "sold_at", "business_day", "sku", "product_description", "brand", "model", "category_code",
    "group_name", "subgroup_code", "category_name", "barcode", "serial", "imei", "warehouse_code",
    "warehouse_name", "quantity", "unit_weight", "gross_weight", "unit_volume", "sales_unit",
    "unit_factor", "quantity_in_units", "computed_weight", "unit_cost_bs", "unit_cost_usd",
    "unit_price_bs", "unit_price_usd", "tax_rate", "tax_amount_bs", "discount_rate",
    "discount_amount_bs", "total_bs", "total_usd", "total_cost_bs", "total_cost_usd",
    "gross_profit_bs", "gross_profit_usd", "invoice_total_bs", "exchange_rate", "is_non_fiscal",
    "has_promotion", "promotion_code",
)  # fmt: skip
SALES_COLUMNS = SALES_KEY + SALES_VALUES
_TEXT_SALES = {
    "sku", "product_description", "brand", "model", "category_code", "group_name",
    "subgroup_code", "category_name", "barcode", "serial", "imei", "warehouse_code",
    "warehouse_name", "sales_unit", "promotion_code", "invoice_number",
}  # fmt: skip


def _sales_type(column: str) -> str:
    if column in _TEXT_SALES:
        return "text"
    return {
        "line_number": "int4",
        "sold_at": "timestamptz",
        "business_day": "date",
        "is_non_fiscal": "bool",
        "has_promotion": "bool",
    }.get(column, "numeric")


SALES_TYPES = [_sales_type(c) for c in SALES_COLUMNS]
INVENTORY_COLUMNS = ("sku", "stock", "price_usd", "tax_rate")
INVENTORY_TYPES = ["text", "numeric", "numeric", "numeric"]


def _stage_sql(name: str, columns: Sequence[str], types: Sequence[str]) -> str:
    body = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
    return f"CREATE TEMP TABLE IF NOT EXISTS {name} ({body}) ON COMMIT DELETE ROWS"


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], types: list[str], rows: Any
) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# --- sales ----------------------------------------------------------------------------------------

_SALES_MERGE = f"""
    INSERT INTO sales_lines AS t (location_id, {", ".join(SALES_COLUMNS)}, loaded_at)
    SELECT %(location)s, {", ".join("s." + c for c in SALES_COLUMNS)}, %(at)s
    FROM baseline_sales AS s
    ON CONFLICT (location_id, invoice_number, line_number) DO UPDATE
    SET {", ".join(f"{c} = EXCLUDED.{c}" for c in SALES_VALUES)}, loaded_at = EXCLUDED.loaded_at
    WHERE ({", ".join("t." + c for c in SALES_VALUES)})
          IS DISTINCT FROM ({", ".join("EXCLUDED." + c for c in SALES_VALUES)})
"""


def load_sales(
    conn: psycopg.Connection[Any],
    batches: Iterable[tuple[str, Sequence[tuple[Any, ...]]]],
    loaded_at: datetime,
    *,
    mode: str = "merge",
) -> int:
    """One transaction per batch; returns the rows the merges wrote."""
    written = 0
    for location, rows in batches:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_stage_sql("baseline_sales", SALES_COLUMNS, SALES_TYPES))
            _copy(cur, "baseline_sales", SALES_COLUMNS, SALES_TYPES, rows)
            if mode != "copy":
                cur.execute(_SALES_MERGE, {"location": location, "at": loaded_at})
                written += cur.rowcount
    return written


# --- inventory ------------------------------------------------------------------------------------

_INVENTORY_MERGE = """
    INSERT INTO inventory_current AS t
        (location_id, warehouse_code, sku, stock, price_usd, tax_rate, updated_at)
    SELECT %(location)s, %(warehouse)s, s.sku, s.stock, s.price_usd, s.tax_rate, %(at)s
    FROM baseline_inventory AS s
    ON CONFLICT (location_id, warehouse_code, sku) DO UPDATE
    SET stock = EXCLUDED.stock, price_usd = EXCLUDED.price_usd, tax_rate = EXCLUDED.tax_rate,
        updated_at = EXCLUDED.updated_at
    WHERE (t.stock, t.price_usd, t.tax_rate)
          IS DISTINCT FROM (EXCLUDED.stock, EXCLUDED.price_usd, EXCLUDED.tax_rate)
"""

_INVENTORY_MERGE_WITH_HISTORY = """
    WITH changed AS (
        SELECT s.sku, s.stock, s.price_usd, s.tax_rate, c.stock AS old_stock,
               c.sku IS NULL AS appeared
        FROM baseline_inventory AS s
        LEFT JOIN inventory_current AS c
          ON c.location_id = %(location)s AND c.warehouse_code = %(warehouse)s AND c.sku = s.sku
        WHERE c.sku IS NULL
           OR (c.stock, c.price_usd, c.tax_rate) IS DISTINCT FROM (s.stock, s.price_usd, s.tax_rate)
    ), history AS (
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd, changed_at)
        SELECT %(location)s, %(warehouse)s, sku,
               CASE WHEN appeared THEN 'appeared' ELSE 'changed' END,
               old_stock, stock, price_usd, %(at)s
        FROM changed WHERE appeared OR old_stock IS DISTINCT FROM stock
    )
    INSERT INTO inventory_current
        (location_id, warehouse_code, sku, stock, price_usd, tax_rate, updated_at)
    SELECT %(location)s, %(warehouse)s, sku, stock, price_usd, tax_rate, %(at)s FROM changed
    ON CONFLICT (location_id, warehouse_code, sku) DO UPDATE
    SET stock = EXCLUDED.stock, price_usd = EXCLUDED.price_usd, tax_rate = EXCLUDED.tax_rate,
        updated_at = EXCLUDED.updated_at
"""


def load_inventory(
    conn: psycopg.Connection[Any],
    batches: Iterable[tuple[str, str, Sequence[tuple[Any, ...]]]],
    updated_at: datetime,
    *,
    mode: str = "history",
) -> None:
    """One transaction per catalogue (see the module docstring for ``mode``)."""
    merge = _INVENTORY_MERGE_WITH_HISTORY if mode == "history" else _INVENTORY_MERGE
    for location, warehouse, rows in batches:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_stage_sql("baseline_inventory", INVENTORY_COLUMNS, INVENTORY_TYPES))
            _copy(cur, "baseline_inventory", INVENTORY_COLUMNS, INVENTORY_TYPES, rows)
            if mode != "copy":
                params = {"location": location, "warehouse": warehouse, "at": updated_at}
                cur.execute(merge, params)
