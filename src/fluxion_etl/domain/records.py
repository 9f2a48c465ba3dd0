"""Frozen domain records: locations, decoded KLK catalogue items and sales lines."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo


class LocationKind(StrEnum):
    STORE = "store"
    DISTRIBUTION_CENTRE = "distribution_centre"


class WarehouseRole(StrEnum):
    SALES_FLOOR = "sales_floor"
    PRINCIPAL = "principal"
    PURCHASING = "purchasing"
    PRODUCTION = "production"
    RETURNS = "returns"
    SHRINK = "shrink"
    STORAGE = "storage"


@dataclass(frozen=True, slots=True)
class Warehouse:
    code: str
    role: WarehouseRole
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OpeningSpan:
    """One open stretch of a local day; ``closes`` of 00:00 means midnight at the end of the day."""

    opens: time
    closes: time

    @property
    def ends_at_midnight(self) -> bool:
        return self.closes == time(0, 0)


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Opening spans per ISO weekday index (0 = Monday ... 6 = Sunday); empty tuple = closed."""

    by_weekday: tuple[tuple[OpeningSpan, ...], ...]

    def spans_on(self, day: date) -> tuple[OpeningSpan, ...]:
        return self.by_weekday[day.weekday()]


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    name: str
    kind: LocationKind
    branch_code: str | None
    warehouses: tuple[Warehouse, ...]
    timezone: str
    opening_hours: OpeningHours
    active: bool = True
    region: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sales_warehouse(self) -> Warehouse | None:
        """The warehouse whose sales are synced: the sales floor of a store with a branch code."""
        if self.branch_code is None:
            return None
        return next((w for w in self.warehouses if w.role is WarehouseRole.SALES_FLOOR), None)

    @property
    def has_sales(self) -> bool:
        return self.sales_warehouse is not None


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    """One article of one warehouse's catalogue (KLK ``articulos[]``)."""

    sku: str
    barcode: str | None
    name: str | None
    category_code: str | None
    subcategory_code: str | None
    category_name: str | None
    subcategory_name: str | None
    brand: str | None
    price_usd: Decimal
    tax_rate: Decimal
    stock: Decimal
    # Of the article exactly as sent (``klk.decode.article_fingerprints``); None when unknown.
    fingerprint: int | None = None


@dataclass(frozen=True, slots=True)
class KnownArticles:
    """What a warehouse holds, for decoding only the articles of a catalogue that changed: the
    stored sku of each fingerprint, and every stored sku (with a fingerprint or without)."""

    by_fingerprint: Mapping[int, str]
    skus: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A decoded catalogue response for one warehouse."""

    warehouse_code: str
    items: tuple[CatalogueItem, ...]
    generated_at: datetime | None
    duplicates_removed: int = 0
    digest: str | None = None  # of the article list as sent (``klk.decode.catalogue_digest``)
    # The article list hashed to the digest the caller already had: not decoded, ``items`` empty.
    unchanged: bool = False
    # Decoded against ``KnownArticles``: ``items`` holds only the articles that are new or
    # changed; ``kept`` more are stored exactly as sent (not decoded), and ``gone`` lists the
    # stored skus the catalogue no longer has. ``gone`` is None when ``items`` is the catalogue.
    kept: int = 0
    gone: tuple[str, ...] | None = None

    @property
    def articles(self) -> int:
        """Distinct articles in the catalogue (0 when ``unchanged``: the caller knows them)."""
        return len(self.items) + self.kept


@dataclass(frozen=True, slots=True)
class SalesLine:
    """One invoice line (KLK ``ventas[]``); money and quantities exact, time UTC-aware."""

    invoice_number: str
    line_number: int
    sold_at: datetime
    business_day: date
    sku: str
    product_description: str | None
    brand: str | None
    model: str | None
    category_code: str | None
    group_name: str | None
    subgroup_code: str | None
    category_name: str | None
    barcode: str | None
    serial: str | None
    imei: str | None
    warehouse_code: str
    warehouse_name: str | None
    quantity: Decimal
    unit_weight: Decimal | None
    gross_weight: Decimal | None
    unit_volume: Decimal | None
    sales_unit: str | None
    unit_factor: Decimal | None
    quantity_in_units: Decimal | None
    computed_weight: Decimal | None
    unit_cost_bs: Decimal | None
    unit_cost_usd: Decimal | None
    unit_price_bs: Decimal | None
    unit_price_usd: Decimal | None
    tax_rate: Decimal | None
    tax_amount_bs: Decimal | None
    discount_rate: Decimal | None
    discount_amount_bs: Decimal | None
    total_bs: Decimal
    total_usd: Decimal
    total_cost_bs: Decimal | None
    total_cost_usd: Decimal | None
    gross_profit_bs: Decimal | None
    gross_profit_usd: Decimal | None
    invoice_total_bs: Decimal | None
    exchange_rate: Decimal | None
    is_non_fiscal: bool
    has_promotion: bool
    promotion_code: str | None
    # Not a value of the sale: the line's bytes as KLK sent them, hashed (``klk.decode``), so a
    # line sent again byte for byte need not be decoded. None for a line not decoded from bytes.
    fingerprint: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.invoice_number, self.line_number)


@dataclass(frozen=True, slots=True)
class KnownLines:
    """The stored lines a sales response may send again, for decoding only the lines that are
    new or changed: the key of each stored fingerprint."""

    by_fingerprint: Mapping[int, tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SalesBatch:
    """A decoded sales response for one warehouse and one local-day window."""

    warehouse_code: str
    lines: tuple[SalesLine, ...]
    declared_count: int
    duplicates_removed: int = 0
    generated_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Decoded against the lines already stored: ``kept`` more lines were sent exactly as a
    # stored line was loaded from (same fingerprint), and were neither decoded nor put in
    # ``lines``.
    kept: int = 0

    @property
    def sent(self) -> int:
        """The distinct lines of the response, decoded or kept."""
        return len(self.lines) + self.kept


@dataclass(frozen=True, slots=True)
class KlkWarehouse:
    """An entry of KLK's warehouse lists (``/maestra/almacenes/...``)."""

    branch_name: str
    branch_code: str
    warehouse_code: str
    warehouse_name: str
