"""Texts longer than the store's columns are refused when decoding, as ``bad_payload``.

PostgreSQL refuses a value longer than its ``varchar(n)`` column while SQLite stores it whole, so
without this check one over-long text from KLK would fail a location's load with a database error
on one dialect only, every run, without naming the KLK field. The widths are those of
``store/schema.py`` (a test checks that they agree) and apply after KLK's CHAR padding is stripped.

    check_widths(records, WIDTHS, locate=..., longest=None)     raises ``wire.Invalid``
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TypeVar

from fluxion_etl.klk.wire import Invalid

_R = TypeVar("_R")

# record field -> (KLK path inside the row, the widest text the store's column holds)
SALES_WIDTHS: Mapping[str, tuple[str, int]] = {
    "invoice_number": (".numero_factura", 64),
    "sku": (".producto[0].codigo_producto", 64),
    "product_description": (".producto[0].descripcion_producto", 300),
    "brand": (".producto[0].marca_producto", 200),
    "model": (".producto[0].modelo_producto", 200),
    "category_code": (".producto[0].categoria_producto", 32),
    "group_name": (".producto[0].grupo_articulo", 200),
    "subgroup_code": (".producto[0].subgrupo_producto", 32),
    "category_name": (".producto[0].categoria_nombre", 200),
    "barcode": (".producto[0].codigo_barras", 64),
    "serial": (".producto[0].serial", 100),
    "imei": (".producto[0].imei", 100),
    "warehouse_code": (".cantidad[0].codigo_almacen", 32),
    "warehouse_name": (".cantidad[0].nombre_almacen", 200),
    "sales_unit": (".cantidad[0].unidad_medida_venta", 16),
    "promotion_code": (".codigo_promocion", 64),
}
CATALOGUE_WIDTHS: Mapping[str, tuple[str, int]] = {
    "sku": (".Codigo", 64),
    "barcode": (".Barra", 64),
    "name": (".NombreProducto", 300),
    "category_code": (".Categoria", 32),
    "subcategory_code": (".Subcategoria", 32),
    "category_name": (".Descripcion", 200),
    "subcategory_name": (".Descripcion_categoria", 200),
    "brand": (".Marca", 200),
}


def longest(texts: Iterable[str | None]) -> int:
    """The length of the longest text (0 when there is none)."""
    return max(map(len, filter(None, texts)), default=0)


def check_widths(
    records: Sequence[_R],
    widths: Mapping[str, tuple[str, int]],
    *,
    locate: Callable[[_R], str],
    longest_seen: int | None = None,
) -> None:
    """Refuse the first record with a text wider than its column; ``locate`` gives the record's
    row path (``$.ventas[3]``). ``longest_seen`` (the longest text of the whole payload, when the
    caller knows it) skips every field at least that wide: one C-speed pass per field otherwise."""
    for name, (path, width) in widths.items():
        if longest_seen is not None and longest_seen <= width:
            continue
        if longest(map(attrgetter(name), records)) <= width:
            continue
        record = next(r for r in records if len(getattr(r, name) or "") > width)
        size = len(getattr(record, name))
        raise Invalid(
            locate(record) + path,
            f"text of {size} characters is longer than the {width} the store can hold",
        )
