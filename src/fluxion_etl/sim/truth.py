"""What a correct load must hold: the simulator's own account of sales and stock, exact decimals.

Tests and the soak compare the product's tables with these, never with what a (possibly faulty)
response carried.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fluxion_etl.sim.articles import ArticleMaster
from fluxion_etl.sim.sales import TICKS_PER_SECOND, SoldLine

CENT = Decimal("0.01")
MILLI = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class TruthLine:
    invoice_number: str
    line_number: int
    sku: str
    warehouse_code: str
    local_time: str
    quantity: Decimal
    total_usd: Decimal
    total_bs: Decimal


@dataclass(frozen=True, slots=True)
class SalesTruth:
    """The valid lines of one (location, local day, warehouse) at ``as_of``, with their totals."""

    location_id: str
    day: date
    warehouse_code: str
    as_of: datetime
    lines: tuple[TruthLine, ...]

    @property
    def line_count(self) -> int:
        return len(self.lines)

    @property
    def invoice_count(self) -> int:
        return len({line.invoice_number for line in self.lines})

    @property
    def total_usd(self) -> Decimal:
        return sum((line.total_usd for line in self.lines), Decimal("0.00"))

    @property
    def total_bs(self) -> Decimal:
        return sum((line.total_bs for line in self.lines), Decimal("0.00"))

    @property
    def keys(self) -> set[tuple[str, int]]:
        return {(line.invoice_number, line.line_number) for line in self.lines}

    def to_json(self, *, with_lines: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "location_id": self.location_id,
            "day": self.day.isoformat(),
            "warehouse_code": self.warehouse_code,
            "as_of": self.as_of.isoformat(),
            "lines": self.line_count,
            "invoices": self.invoice_count,
            "total_usd": str(self.total_usd),
            "total_bs": str(self.total_bs),
        }
        if with_lines:
            body["items"] = [
                {
                    "invoice_number": line.invoice_number,
                    "line_number": line.line_number,
                    "sku": line.sku,
                    "warehouse_code": line.warehouse_code,
                    "local_time": line.local_time,
                    "quantity": str(line.quantity),
                    "total_usd": str(line.total_usd),
                    "total_bs": str(line.total_bs),
                }
                for line in self.lines
            ]
        return body


@dataclass(frozen=True, slots=True)
class CatalogueTruth:
    """A warehouse's articles at ``as_of``: stock and price per SKU, exact."""

    warehouse_code: str
    as_of: datetime
    stock: dict[str, Decimal]
    price_usd: dict[str, Decimal]

    def to_json(self, *, with_items: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "warehouse_code": self.warehouse_code,
            "as_of": self.as_of.isoformat(),
            "articles": len(self.stock),
            "with_stock": sum(1 for v in self.stock.values() if v != 0),
            "stock_total": str(sum(self.stock.values(), Decimal("0.000"))),
        }
        if with_items:
            body["items"] = {
                sku: {"stock": str(qty), "price_usd": str(self.price_usd[sku])}
                for sku, qty in self.stock.items()
            }
        return body


def _local_time(ticks: int) -> str:
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{fraction:07d}"


def sales_truth(
    *,
    location_id: str,
    day: date,
    warehouse_code: str,
    as_of: datetime,
    lines: Sequence[SoldLine],
    master: ArticleMaster,
) -> SalesTruth:
    return SalesTruth(
        location_id=location_id,
        day=day,
        warehouse_code=warehouse_code,
        as_of=as_of,
        lines=tuple(
            TruthLine(
                invoice_number=line.invoice,
                line_number=line.line,
                sku=master.articles[line.article].code,
                warehouse_code=line.warehouse,
                local_time=_local_time(line.ticks),
                quantity=Decimal(line.qty_milli) * MILLI,
                total_usd=Decimal(line.total_usd_cents) * CENT,
                total_bs=Decimal(line.total_bs_cents) * CENT,
            )
            for line in lines
        ),
    )


def catalogue_truth(
    code: str, as_of: datetime, stock: array[int], master: ArticleMaster
) -> CatalogueTruth:
    articles = master.articles
    return CatalogueTruth(
        warehouse_code=code,
        as_of=as_of,
        stock={a.code: Decimal(milli) * MILLI for a, milli in zip(articles, stock, strict=True)},
        price_usd={a.code: Decimal(a.price_cents) * CENT for a in articles},
    )
