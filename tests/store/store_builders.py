"""Builders of decoded records (SalesLine, CatalogueItem) for the loader tests and benchmarks, and
probes of what a load wrote (PostgreSQL row versions and table counters).

Values are deterministic in ``n`` and use the awkward cases on purpose: negative and fractional
quantities, many decimal places, NULLs in optional columns, microsecond timestamps.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

from fluxion_etl.domain.records import CatalogueItem, SalesLine

DAY = date(2026, 1, 5)
OPENING = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # 07:00 in Caracas


def sales_line(n: int, **overrides: Any) -> SalesLine:
    """Line ``n``: invoice ``F{n // 4}``, line ``n % 4 + 1``; sold a few seconds after ``n - 1``."""
    price = Decimal(n % 997) + Decimal("0.25")
    quantity = Decimal(n % 7 + 1) if n % 5 else Decimal("1.375")
    line = SalesLine(
        invoice_number=f"F{n // 4:08d}",
        line_number=n % 4 + 1,
        sold_at=OPENING + timedelta(seconds=n * 3, microseconds=n % 1000),
        business_day=DAY,
        sku=f"{n % 3900:06d}",
        product_description=f"ARTICULO {n % 3900}",
        brand=None if n % 3 else "MARCA",
        model=None,
        category_code="01",
        group_name="VIVERES",
        subgroup_code="0101",
        category_name="HARINAS",
        barcode=f"759{n % 3900:010d}",
        serial=None,
        imei=None,
        warehouse_code="APP-TPF",
        warehouse_name="PISO DE VENTA",
        quantity=quantity,
        unit_weight=Decimal("1.000") if n % 2 else None,
        gross_weight=Decimal("1.05"),
        unit_volume=None,
        sales_unit="UNIDAD" if n % 5 else "KG",
        unit_factor=Decimal("1"),
        quantity_in_units=quantity,
        computed_weight=Decimal("0.123456"),
        unit_cost_bs=price * 30,
        unit_cost_usd=price - Decimal("0.1"),
        unit_price_bs=price * Decimal("36.5012"),
        unit_price_usd=price,
        tax_rate=Decimal("16") if n % 4 else Decimal("0"),
        tax_amount_bs=Decimal("5.84"),
        discount_rate=Decimal("0"),
        discount_amount_bs=Decimal("0.00"),
        total_bs=price * quantity * Decimal("36.5012"),
        total_usd=price * quantity,
        total_cost_bs=Decimal("-12.5") if n % 11 == 0 else price * 29,
        total_cost_usd=price,
        gross_profit_bs=Decimal("1.23456789"),
        gross_profit_usd=Decimal("0.03"),
        invoice_total_bs=Decimal("1234.56"),
        exchange_rate=Decimal("36.5012"),
        is_non_fiscal=n % 13 == 0,
        has_promotion=n % 17 == 0,
        promotion_code="PROMO1" if n % 17 == 0 else None,
    )
    return replace(line, **overrides) if overrides else line


def sales_lines(count: int, start: int = 0) -> list[SalesLine]:
    return [sales_line(n) for n in range(start, start + count)]


def catalogue_item(n: int, **overrides: Any) -> CatalogueItem:
    item = CatalogueItem(
        sku=f"{n:06d}",
        barcode=f"759{n:010d}",
        name=f"ARTICULO {n}",
        category_code="01",
        subcategory_code="0101",
        category_name="VIVERES",
        subcategory_name="HARINAS",
        brand=None if n % 3 else "MARCA",
        price_usd=Decimal(n % 50) + Decimal("0.99"),
        tax_rate=Decimal("16") if n % 4 else Decimal("0"),
        stock=Decimal(n % 40) - Decimal("3.5") if n % 2 else Decimal(0),
    )
    return replace(item, **overrides) if overrides else item


def catalogue(count: int, start: int = 0) -> list[CatalogueItem]:
    return [catalogue_item(n) for n in range(start, start + count)]


def flush_pg_stats(conn: Connection) -> None:
    """Make this backend publish its table counters when its transaction ends (PostgreSQL 15+)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_stat_force_next_flush()"))


def pg_writes(engine: Engine, table: str) -> tuple[int, int, int]:
    """(inserted, updated, deleted) row counters of ``table`` from ``pg_stat_user_tables``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(
            text(
                "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                "WHERE relname = :table"
            ),
            {"table": table},
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def row_versions(engine: Engine, table: str, key: str) -> dict[Any, str]:
    """``xmin`` of every row by ``key``: a row rewritten by an UPDATE gets a new one."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {key}, xmin::text FROM {table}"))
        return {row[0]: row[1] for row in rows}
