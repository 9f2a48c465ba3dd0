"""Turn KLK response bodies into domain records: pure functions of bytes, all-or-nothing.

A payload is either decoded whole or rejected whole (SPEC §4.4): one undecodable row makes the
response a ``bad_payload``, an ``{"error": ...}`` body is an ``error_body`` and a ``meta`` count
that disagrees with the rows is a ``count_mismatch``. Every failure is a ``KlkError`` carrying the
raw bytes, so the runner can store what KLK sent; arbitrary bytes never raise anything else.

Numbers are decoded by msgspec straight from the JSON literal into ``Decimal`` (never through a
binary float), so ``2.675`` stays ``2.675``. KLK field names appear only in this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from fluxion_etl.domain.records import (
    Catalogue,
    CatalogueItem,
    KlkWarehouse,
    SalesBatch,
    SalesLine,
)
from fluxion_etl.errors import (
    KlkBadPayloadError,
    KlkCountMismatchError,
    KlkError,
    KlkErrorBodyError,
)

NULL_TEXTS = frozenset({"", "N/A"})
"""Text values KLK uses for "no value"."""

MAX_MAGNITUDE_DIGITS = 15
"""A number at or above 10**15 (Bs, USD, units or rate) is a corrupt value, not a sale."""
MIN_MAGNITUDE_EXPONENT = -12
"""A non-zero number below 10**-12 cannot be a real quantity or amount."""
MAX_SIGNIFICANT_DIGITS = 28
"""More significant digits than the store's NUMERIC(28, 8) could keep exactly."""
FIRST_YEAR, LAST_YEAR = 1990, 2100
"""Sales dated outside these years are corrupt dates."""
MAX_LINE_NUMBER = 2**31 - 1

_T = TypeVar("_T")

_HORA = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_TRUE_FLAGS = frozenset({"S", "SI", "Y", "YES", "1", "TRUE"})
_FALSE_FLAGS = frozenset({"", "N", "NO", "0", "FALSE"})


class _Invalid(Exception):
    """A value that cannot be decoded; ``path`` names row and field in JSONPath form."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{reason} - at `{path}`")


# --- wire shapes (KLK names) ---------------------------------------------------------------------


class _Wire(msgspec.Struct, kw_only=True):
    """Base of the wire structs: unknown keys are ignored (deployments add fields)."""


class _CatalogueMeta(_Wire, kw_only=True):
    total_articulos: int
    fecha_generacion: str | None = None
    almacences_filtrados: Any = None


class _Article(_Wire, kw_only=True):
    sku: str = msgspec.field(name="Codigo")
    barcode: str | None = msgspec.field(name="Barra", default=None)
    name: str | None = msgspec.field(name="NombreProducto", default=None)
    category_code: str | None = msgspec.field(name="Categoria", default=None)
    subcategory_code: str | None = msgspec.field(name="Subcategoria", default=None)
    category_name: str | None = msgspec.field(name="Descripcion", default=None)
    subcategory_name: str | None = msgspec.field(name="Descripcion_categoria", default=None)
    brand: str | None = msgspec.field(name="Marca", default=None)
    price_usd: Decimal = msgspec.field(name="Precio")
    tax_rate: Decimal = msgspec.field(name="Iva")
    stock: Decimal


class _SalesMeta(_Wire, kw_only=True):
    total_registros: int
    fecha_generacion: str | None = None


class _Product(_Wire, kw_only=True):
    codigo_producto: str
    descripcion_producto: str | None = None
    marca_producto: str | None = None
    modelo_producto: str | None = None
    categoria_producto: str | None = None
    grupo_articulo: str | None = None
    subgrupo_producto: str | None = None
    categoria_nombre: str | None = None
    codigo_barras: str | None = None
    serial: str | None = None
    imei: str | None = None


class _Quantity(_Wire, kw_only=True):
    codigo_almacen: str
    nombre_almacen: str | None = None
    cantidad_vendida: Decimal
    peso_unitario: Decimal | None = None
    peso_bruto: Decimal | None = None
    volumen_unitario: Decimal | None = None
    unidad_medida_venta: str | None = None
    factor_unidad_medida: Decimal | None = None
    total_cantidad_por_unidad_medida: Decimal | None = None
    peso_calculado: Decimal | None = None


class _Financial(_Wire, kw_only=True):
    costo_unitario_bs: Decimal | None = None
    costo_unitario_usd: Decimal | None = None
    precio_unitario_bs: Decimal | None = None
    precio_unitario_usd: Decimal | None = None
    impuesto_porcentaje: Decimal | None = None
    impuesto_monto: Decimal | None = None
    porcentaje_descuento: Decimal | None = None
    monto_descuento: Decimal | None = None
    venta_total_bs: Decimal
    venta_total_usd: Decimal
    costo_total_bs: Decimal | None = None
    costo_total_usd: Decimal | None = None
    utilidad_bruta_bs: Decimal | None = None
    utilidad_bruta_usd: Decimal | None = None


class _Sale(_Wire, kw_only=True):
    numero_factura: str
    linea: int
    fecha: date
    hora: str
    producto: list[_Product]
    cantidad: list[_Quantity]
    financiero: list[_Financial]
    total_factura: Decimal | None = None
    tasa_usd: Decimal | None = None
    es_no_fiscal: bool | str
    tiene_promocion: bool | str | None = None
    codigo_promocion: str | None = None


class _Warehouse(_Wire, kw_only=True):
    branch_name: str | None = msgspec.field(name="NombreSucursal", default=None)
    branch_code: str = msgspec.field(name="CodigoSucursal")
    warehouse_code: str = msgspec.field(name="CodigoAlmacen")
    warehouse_name: str | None = msgspec.field(name="NombreAlmacen", default=None)


# --- public decoders -----------------------------------------------------------------------------


def decode_catalogue(
    body: bytes, *, warehouse_code: str, call: str = "articulos/almacen"
) -> Catalogue:
    """Decode ``{"meta", "articulos"}`` (``/maestra/articulos/almacen`` or ``/reposicion``)."""
    with _bad_payload_guard(call, body):
        return _catalogue(body, warehouse_code, call)


def catalogue_warehouses(body: bytes, *, call: str = "articulos/reposicion") -> tuple[str, ...]:
    """The warehouse codes a catalogue response says it covers (``meta.almacences_filtrados``).

    Needed for by-branch catalogues, whose request names a branch, not a warehouse.
    """
    with _bad_payload_guard(call, body):
        top = _envelope(body, call)
        meta = _decode_part(top, "meta", _CatalogueMeta)
        return _filtered_codes(meta.almacences_filtrados)


def decode_sales(
    body: bytes, *, warehouse_code: str, zone: ZoneInfo, call: str = "ventas"
) -> SalesBatch:
    """Decode ``{"meta", "ventas"}`` of one warehouse; times are read in ``zone``, kept in UTC."""
    with _bad_payload_guard(call, body):
        return _sales(body, warehouse_code, zone, call)


def decode_warehouses(body: bytes, call: str) -> list[KlkWarehouse]:
    """Decode a ``/maestra/almacenes/...`` list."""
    with _bad_payload_guard(call, body):
        shape = msgspec.json.decode(_without_bom(body), type=list[msgspec.Raw] | dict[str, Any])
        if isinstance(shape, dict):
            _raise_error_body(shape, call, body)
            raise _Invalid("$", "expected a list of warehouses, got an object")
        rows = _decode_rows(shape, "$", _Warehouse)
        return [_warehouse(row, f"$[{i}]") for i, row in enumerate(rows)]


# --- catalogue -----------------------------------------------------------------------------------


def _catalogue(body: bytes, warehouse_code: str, call: str) -> Catalogue:
    top = _envelope(body, call)
    meta = _decode_part(top, "meta", _CatalogueMeta)
    raw_rows = _decode_part(top, "articulos", list[msgspec.Raw])
    if meta.total_articulos != len(raw_rows):
        raise KlkCountMismatchError(call, meta.total_articulos, len(raw_rows), raw=body)
    rows = _decode_rows(raw_rows, "$.articulos", _Article)
    items: dict[str, CatalogueItem] = {}
    for index, row in enumerate(rows):
        item = _article(row, f"$.articulos[{index}]")
        items.setdefault(item.sku, item)
    return Catalogue(
        warehouse_code=warehouse_code,
        items=tuple(items.values()),
        generated_at=_generated_at(meta.fecha_generacion, None),
        duplicates_removed=len(rows) - len(items),
    )


def _article(row: _Article, at: str) -> CatalogueItem:
    _check_numbers(row, at)
    return CatalogueItem(
        sku=_code(row.sku, f"{at}.Codigo"),
        barcode=_text(row.barcode),
        name=_text(row.name),
        category_code=_text(row.category_code),
        subcategory_code=_text(row.subcategory_code),
        category_name=_text(row.category_name),
        subcategory_name=_text(row.subcategory_name),
        brand=_text(row.brand),
        price_usd=row.price_usd,
        tax_rate=row.tax_rate,
        stock=row.stock,
    )


def _filtered_codes(value: Any) -> tuple[str, ...]:
    """``almacences_filtrados`` is a JSON list inside a string; tolerate absence and odd forms."""
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value.encode())
        except msgspec.DecodeError:
            value = [value]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(code.strip() for code in value if isinstance(code, str) and code.strip())


# --- sales ---------------------------------------------------------------------------------------


def _sales(body: bytes, warehouse_code: str, zone: ZoneInfo, call: str) -> SalesBatch:
    top = _envelope(body, call)
    meta = _decode_part(top, "meta", _SalesMeta)
    raw_rows = _decode_part(top, "ventas", list[msgspec.Raw])
    if meta.total_registros != len(raw_rows):
        raise KlkCountMismatchError(call, meta.total_registros, len(raw_rows), raw=body)
    rows = _decode_rows(raw_rows, "$.ventas", _Sale)
    lines: dict[tuple[str, int], SalesLine] = {}
    for index, row in enumerate(rows):
        line = _sales_line(row, f"$.ventas[{index}]", zone)
        if line.warehouse_code != warehouse_code:
            raise _Invalid(
                f"$.ventas[{index}].cantidad[0].codigo_almacen",
                f"line of warehouse {line.warehouse_code!r} in a response for {warehouse_code!r} "
                "(KLK merged warehouses)",
            )
        lines.setdefault(line.key, line)
    return SalesBatch(
        warehouse_code=warehouse_code,
        lines=tuple(lines.values()),
        declared_count=meta.total_registros,
        duplicates_removed=len(rows) - len(lines),
        generated_at=_generated_at(meta.fecha_generacion, zone),
        extra=_echoed_filters(top),
    )


def _sales_line(row: _Sale, at: str, zone: ZoneInfo) -> SalesLine:
    product = _first(row.producto, f"{at}.producto")
    quantity = _first(row.cantidad, f"{at}.cantidad")
    money = _first(row.financiero, f"{at}.financiero")
    for part, where in ((row, at), (quantity, f"{at}.cantidad[0]"), (money, f"{at}.financiero[0]")):
        _check_numbers(part, where)
    return SalesLine(
        invoice_number=_code(row.numero_factura, f"{at}.numero_factura"),
        line_number=_line_number(row.linea, f"{at}.linea"),
        sold_at=_sold_at(row.fecha, row.hora, zone, at),
        business_day=row.fecha,
        **_product_fields(product, f"{at}.producto[0]"),
        **_quantity_fields(quantity, f"{at}.cantidad[0]"),
        **_money_fields(money),
        invoice_total_bs=row.total_factura,
        exchange_rate=row.tasa_usd,
        is_non_fiscal=_flag(row.es_no_fiscal, f"{at}.es_no_fiscal"),
        has_promotion=_flag(row.tiene_promocion, f"{at}.tiene_promocion"),
        promotion_code=_text(row.codigo_promocion),
    )


def _product_fields(product: _Product, at: str) -> dict[str, Any]:
    return {
        "sku": _code(product.codigo_producto, f"{at}.codigo_producto"),
        "product_description": _text(product.descripcion_producto),
        "brand": _text(product.marca_producto),
        "model": _text(product.modelo_producto),
        "category_code": _text(product.categoria_producto),
        "group_name": _text(product.grupo_articulo),
        "subgroup_code": _text(product.subgrupo_producto),
        "category_name": _text(product.categoria_nombre),
        "barcode": _text(product.codigo_barras),
        "serial": _text(product.serial),
        "imei": _text(product.imei),
    }


def _quantity_fields(quantity: _Quantity, at: str) -> dict[str, Any]:
    return {
        "warehouse_code": _code(quantity.codigo_almacen, f"{at}.codigo_almacen"),
        "warehouse_name": _text(quantity.nombre_almacen),
        "quantity": quantity.cantidad_vendida,
        "unit_weight": quantity.peso_unitario,
        "gross_weight": quantity.peso_bruto,
        "unit_volume": quantity.volumen_unitario,
        "sales_unit": _text(quantity.unidad_medida_venta),
        "unit_factor": quantity.factor_unidad_medida,
        "quantity_in_units": quantity.total_cantidad_por_unidad_medida,
        "computed_weight": quantity.peso_calculado,
    }


def _money_fields(money: _Financial) -> dict[str, Any]:
    return {
        "unit_cost_bs": money.costo_unitario_bs,
        "unit_cost_usd": money.costo_unitario_usd,
        "unit_price_bs": money.precio_unitario_bs,
        "unit_price_usd": money.precio_unitario_usd,
        "tax_rate": money.impuesto_porcentaje,
        "tax_amount_bs": money.impuesto_monto,
        "discount_rate": money.porcentaje_descuento,
        "discount_amount_bs": money.monto_descuento,
        "total_bs": money.venta_total_bs,
        "total_usd": money.venta_total_usd,
        "total_cost_bs": money.costo_total_bs,
        "total_cost_usd": money.costo_total_usd,
        "gross_profit_bs": money.utilidad_bruta_bs,
        "gross_profit_usd": money.utilidad_bruta_usd,
    }


def _sold_at(day: date, hora: str, zone: ZoneInfo, at: str) -> datetime:
    """Local ``fecha`` + ``hora`` in the location's zone, as a UTC instant."""
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise _Invalid(f"{at}.fecha", f"date {day} is outside {FIRST_YEAR}-{LAST_YEAR}")
    local = datetime.combine(day, _local_time(hora, f"{at}.hora"), tzinfo=zone)
    return local.astimezone(UTC)


def _local_time(hora: str, at: str) -> time:
    """``HH:MM:SS`` with up to 7 fractional digits (SQL Server), truncated to microseconds."""
    match = _HORA.fullmatch(hora)
    if match is None:
        raise _Invalid(at, f"time {hora!r} is not HH:MM:SS[.fffffff]")
    hours, minutes, seconds, fraction = match.groups()
    micros = int((fraction or "").ljust(6, "0")[:6])
    try:
        return time(int(hours), int(minutes), int(seconds), micros)
    except ValueError:
        raise _Invalid(at, f"time {hora!r} is out of range") from None


def _echoed_filters(top: dict[str, msgspec.Raw]) -> dict[str, str]:
    """The request filters KLK echoes in ``meta`` (kept for inspection), as text."""
    meta = msgspec.json.decode(top["meta"], type=dict[str, Any])
    skip = {"total_registros", "fecha_generacion"}
    return {
        key: str(value)
        for key, value in meta.items()
        if key not in skip and isinstance(value, str | int) and not isinstance(value, bool)
    }


# --- shared pieces -------------------------------------------------------------------------------


@contextmanager
def _bad_payload_guard(call: str, body: bytes) -> Iterator[None]:
    """Whatever goes wrong decoding ``body`` leaves as a ``KlkError`` with the raw bytes."""
    try:
        yield
    except KlkError:
        raise
    except _Invalid as exc:
        raise KlkBadPayloadError(call, str(exc), raw=body) from None
    except msgspec.MsgspecError as exc:
        raise KlkBadPayloadError(call, str(exc), raw=body) from None
    except RecursionError:
        raise KlkBadPayloadError(call, "JSON nested too deeply", raw=body) from None


def _without_bom(body: bytes) -> bytes:
    """.NET servers may prefix UTF-8 JSON with a byte-order mark."""
    return body[3:] if body.startswith(b"\xef\xbb\xbf") else body


def _envelope(body: bytes, call: str) -> dict[str, msgspec.Raw]:
    """The top-level object, values left undecoded; an ``error`` key is an error body."""
    top = msgspec.json.decode(_without_bom(body), type=dict[str, msgspec.Raw])
    _raise_error_body(top, call, body)
    return top


def _raise_error_body(top: dict[str, Any], call: str, body: bytes) -> None:
    if "error" not in top:
        return
    value = top["error"]
    if isinstance(value, msgspec.Raw):
        value = msgspec.json.decode(value)
    message = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    raise KlkErrorBodyError(call, message[:500] or "(empty error message)", raw=body)


def _decode_part(top: dict[str, msgspec.Raw], key: str, kind: type[_T]) -> _T:
    if key not in top:
        raise _Invalid("$", f"object has no `{key}` key")
    try:
        return msgspec.json.decode(top[key], type=kind)
    except msgspec.ValidationError as exc:
        raise _Invalid(f"$.{key}", _located(str(exc), f"$.{key}")) from None


def _decode_rows(raw_rows: list[msgspec.Raw], at: str, kind: type[_T]) -> list[_T]:
    rows: list[_T] = []
    for index, raw in enumerate(raw_rows):
        try:
            rows.append(msgspec.json.decode(raw, type=kind))
        except msgspec.ValidationError as exc:
            raise _Invalid(f"{at}[{index}]", _located(str(exc), f"{at}[{index}]")) from None
    return rows


def _located(message: str, prefix: str) -> str:
    """msgspec names paths from the part it decoded (``$.x``); re-root them in the whole body."""
    reason, _, path = message.partition(" - at `$")
    return f"{reason} (at `{prefix}{path.rstrip('`')}`)" if path else reason


def _check_numbers(struct: msgspec.Struct, at: str) -> None:
    """Reject NaN, infinities and absurd magnitudes (msgspec accepts "NaN" strings as decimals)."""
    for name, wire in zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True):
        value = getattr(struct, name)
        if isinstance(value, Decimal) and not _plausible(value):
            raise _Invalid(f"{at}.{wire}", f"number {value} is not finite or out of range")


def _plausible(value: Decimal) -> bool:
    if not value.is_finite():
        return False
    if not value:
        return True
    magnitude = value.adjusted()
    digits = len(value.as_tuple().digits)
    return (
        MIN_MAGNITUDE_EXPONENT <= magnitude < MAX_MAGNITUDE_DIGITS
        and digits <= MAX_SIGNIFICANT_DIGITS
    )


def _first(items: list[_T], at: str) -> _T:
    if not items:
        raise _Invalid(at, "array is empty; element 0 holds the line's data")
    return items[0]


def _text(value: str | None) -> str | None:
    """KLK's "no value" spellings (``"N/A"``, ``""``) become None; CHAR padding is dropped."""
    if value is None:
        return None
    value = value.strip()
    return None if value in NULL_TEXTS else value


def _code(value: str, at: str) -> str:
    """A required identifier: present, not blank, not ``"N/A"``."""
    text = _text(value)
    if text is None:
        raise _Invalid(at, f"required code is {value!r}")
    return text


def _line_number(value: int, at: str) -> int:
    if not 0 <= value <= MAX_LINE_NUMBER:
        raise _Invalid(at, f"line number {value} is out of range")
    return value


def _flag(value: bool | str | None, at: str) -> bool:
    """KLK flags come as JSON booleans or as "S"/"" strings."""
    if value is None or isinstance(value, bool):
        return bool(value)
    word = value.strip().upper()
    if word in _TRUE_FLAGS:
        return True
    if word in _FALSE_FLAGS:
        return False
    raise _Invalid(at, f"flag {value!r} is neither true nor false")


def _warehouse(row: _Warehouse, at: str) -> KlkWarehouse:
    return KlkWarehouse(
        branch_name=_text(row.branch_name) or "",
        branch_code=_code(row.branch_code, f"{at}.CodigoSucursal"),
        warehouse_code=_code(row.warehouse_code, f"{at}.CodigoAlmacen"),
        warehouse_name=_text(row.warehouse_name) or "",
    )


def _generated_at(text: str | None, zone: ZoneInfo | None) -> datetime | None:
    """``meta.fecha_generacion``: informative only, so an unreadable value is dropped, not fatal.

    A value without an offset is local time of ``zone``; without a zone it cannot be placed.
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        if zone is None:
            return None
        moment = moment.replace(tzinfo=zone)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
