"""KLK's wire shapes (its own field names) and the field-level rules of decoding them.

Internal to ``fluxion_etl.klk``: ``decode`` turns these structs into domain records. Unknown
keys are ignored, because deployments add fields (e.g. ``cuadrante_producto``); missing
required keys, wrong types, NaN, absurd magnitudes and NUL characters are refused with a JSONPath
to the value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, time
from decimal import Decimal
from functools import cache
from itertools import chain
from operator import attrgetter
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin

import msgspec

NULL_TEXTS = frozenset({"", "N/A"})
"""Text values KLK uses for "no value"."""

MAX_MAGNITUDE_DIGITS = 15
"""A number at or above 10**15 (Bs, USD, units or rate) is a corrupt value, not a sale."""
MIN_MAGNITUDE_EXPONENT = -12
"""A non-zero number below 10**-12 cannot be a real quantity or amount."""
FIRST_YEAR, LAST_YEAR = 1990, 2100
"""Sales dated outside these years are corrupt dates."""
MAX_LINE_NUMBER = 2**31 - 1

_T = TypeVar("_T")

# ASCII: ``\d`` would also take other scripts' digits ("１２:００:００" is not a KLK time).
_HORA = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?", re.ASCII)
_TRUE_FLAGS = frozenset({"S", "SI", "Y", "YES", "1", "TRUE"})
_FALSE_FLAGS = frozenset({"", "N", "NO", "0", "FALSE"})


class Invalid(Exception):
    """A value that cannot be decoded; ``path`` names row and field in JSONPath form."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{reason} - at `{path}`")


# --- wire shapes (KLK names) ---------------------------------------------------------------------


class Wire(msgspec.Struct, kw_only=True, gc=False):
    """Base of the wire structs: unknown keys are ignored (deployments add fields)."""


class CatalogueEnvelope(Wire, kw_only=True, forbid_unknown_fields=True):
    """A catalogue body read in one pass: ``meta`` left undecoded and each article's bytes.
    Empty ``Raw`` for a key that is missing; ``articulos`` None for a missing key or ``null``.

    Any other top-level key fails it (the caller then reads the body the general way): a key
    skipped here would not be checked at all, not even as UTF-8."""

    meta: msgspec.Raw = msgspec.Raw()
    articulos: list[msgspec.Raw] | None = None
    error: msgspec.Raw = msgspec.Raw()


class CatalogueMeta(Wire, kw_only=True):
    total_articulos: int
    fecha_generacion: Any = None  # informative only: any value is read leniently (decode)
    almacences_filtrados: Any = None


class Article(Wire, kw_only=True):
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
    # Not KLK's: the decoder sets it on every row from the row's bytes, and the records take it
    # from here. ``Any``, so that a payload with a key of this name is not refused for it; the
    # decoder overwrites whatever it says.
    fingerprint: Any = msgspec.field(name="fluxion:fingerprint", default=None)


class SalesMeta(Wire, kw_only=True):
    total_registros: int
    fecha_generacion: Any = None  # informative only: any value is read leniently (decode)


class Product(Wire, kw_only=True):
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


class Quantity(Wire, kw_only=True):
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


class Financial(Wire, kw_only=True):
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


class Sale(Wire, kw_only=True):
    numero_factura: str
    linea: int
    fecha: date
    hora: str
    producto: list[Product]
    cantidad: list[Quantity]
    financiero: list[Financial]
    total_factura: Decimal | None = None
    tasa_usd: Decimal | None = None
    es_no_fiscal: bool | str
    tiene_promocion: bool | str | None = None
    codigo_promocion: str | None = None


class Warehouse(Wire, kw_only=True):
    branch_name: str | None = msgspec.field(name="NombreSucursal", default=None)
    branch_code: str = msgspec.field(name="CodigoSucursal")
    warehouse_code: str = msgspec.field(name="CodigoAlmacen")
    warehouse_name: str | None = msgspec.field(name="NombreAlmacen", default=None)


# --- field rules ----------------------------------------------------------------------------------


def parse_local_time(hora: str, at: str) -> time:
    """``HH:MM:SS`` with up to 7 fractional digits (SQL Server), truncated to microseconds."""
    match = _HORA.fullmatch(hora)
    if match is None:
        raise Invalid(at, f"time {hora!r} is not HH:MM:SS[.fffffff]")
    hours, minutes, seconds, fraction = match.groups()
    micros = int((fraction or "").ljust(6, "0")[:6])
    try:
        return time(int(hours), int(minutes), int(seconds), micros)
    except ValueError:
        raise Invalid(at, f"time {hora!r} is out of range") from None


def check_numbers(struct: msgspec.Struct, at: str) -> None:
    """Reject NaN, infinities and absurd magnitudes (msgspec accepts "NaN" strings as decimals)."""
    for name, wire_name in _fields_of(type(struct), Decimal):
        value = getattr(struct, name)
        if value is not None and not is_plausible(value):
            raise Invalid(f"{at}.{wire_name}", f"number {value} is not finite or out of range")


def all_plausible(structs: Sequence[msgspec.Struct], kind: type[msgspec.Struct]) -> bool:
    """True when every Decimal field of every struct passes ``is_plausible``.

    The fast path of ``check_numbers`` for a whole payload: values are gathered and tested by C
    iterators (``attrgetter``, ``filter``, ``Decimal.is_finite``/``adjusted``), about ten times
    faster than a Python call per value. Zeros and None need no test and are filtered out. When
    it says False, the caller runs ``check_numbers`` row by row to name the offending value.
    """
    names = [name for name, _ in _fields_of(kind, Decimal)]
    if not names or not structs:
        return True
    get = attrgetter(*names)
    gathered = map(get, structs) if len(names) > 1 else ((v,) for v in map(get, structs))
    values = list(filter(None, chain.from_iterable(gathered)))
    if not all(map(Decimal.is_finite, values)):
        return False
    exponents = list(map(Decimal.adjusted, values))
    return not exponents or (
        min(exponents) >= MIN_MAGNITUDE_EXPONENT and max(exponents) < MAX_MAGNITUDE_DIGITS
    )


def check_text(struct: msgspec.Struct, at: str) -> None:
    """Reject text with NUL characters (no database column holds them), nested rows included.

    Slow-ish, so callers run it only when the body contains the escape ``\\u0000`` at all.
    """
    for name, wire_name in _fields_of(type(struct), str):
        value = getattr(struct, name)
        if isinstance(value, str) and "\x00" in value:
            raise Invalid(f"{at}.{wire_name}", "text contains a NUL character")
    for name, wire_name in _fields_of(type(struct), list):
        for index, child in enumerate(getattr(struct, name)):
            check_text(child, f"{at}.{wire_name}[{index}]")


@cache
def _fields_of(kind: type[msgspec.Struct], wanted: type) -> tuple[tuple[str, str], ...]:
    """(attribute, KLK name) of the fields of ``kind`` that can hold a ``wanted`` value
    (for ``list``: a list of structs)."""
    found = []
    for field in msgspec.structs.fields(kind):
        is_union = isinstance(field.type, UnionType)
        options = get_args(field.type) if is_union else (field.type,)
        if wanted is list:
            options = tuple(get_origin(option) for option in options)
        if wanted in options:
            found.append((field.name, field.encode_name))
    return tuple(found)


def is_plausible(value: Decimal) -> bool:
    """Finite, and zero or between 10**-12 and 10**15 in magnitude."""
    if not value.is_finite():
        return False
    return not value or MIN_MAGNITUDE_EXPONENT <= value.adjusted() < MAX_MAGNITUDE_DIGITS


def first_element(items: list[_T], at: str) -> _T:
    if not items:
        raise Invalid(at, "array is empty; element 0 holds the line's data")
    return items[0]


def optional_text(value: str | None) -> str | None:
    """KLK's "no value" spellings (``"N/A"``, ``""``) become None; CHAR padding is dropped."""
    if value is None:
        return None
    value = value.strip()
    return None if value in NULL_TEXTS else value


def required_code(value: str, at: str) -> str:
    """A required identifier: present, not blank, not ``"N/A"``."""
    text = optional_text(value)
    if text is None:
        raise Invalid(at, f"required code is {value!r}")
    return text


def checked_line_number(value: int, at: str) -> int:
    if not 0 <= value <= MAX_LINE_NUMBER:
        raise Invalid(at, f"line number {value} is out of range")
    return value


def parse_flag(value: bool | str | None, at: str) -> bool:
    """KLK flags come as JSON booleans or as "S"/"" strings."""
    if value is None or isinstance(value, bool):
        return bool(value)
    word = value.strip().upper()
    if word in _TRUE_FLAGS:
        return True
    if word in _FALSE_FLAGS:
        return False
    raise Invalid(at, f"flag {value!r} is neither true nor false")
