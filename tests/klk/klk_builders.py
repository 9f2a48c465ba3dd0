"""Builders of KLK-shaped payloads for the decoder and client tests (KLK's own field names).

Numbers are written as JSON number literals straight from ``Decimal`` text, so a test can assert
that exactly the literal it sent comes back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from fluxion_etl.domain.records import KnownLines, SalesBatch
from fluxion_etl.klk.decode import decode_sales

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode(value: Any) -> bytes:
    return _ENCODER.encode(value)


def article(code: str = "000001", **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Codigo": code,
        "Barra": "7591234000017",
        "NombreProducto": "HARINA DE MAIZ PRECOCIDA 1KG",
        "Categoria": "01",
        "Subcategoria": "0101",
        "Descripcion": "VIVERES",
        "Descripcion_categoria": "HARINAS",
        "Marca": "DOÑA ARE",
        "Precio": Decimal("1.25"),
        "Iva": Decimal(0),
        "stock": Decimal(148),
    }
    item.update(overrides)
    return item


def catalogue_body(
    articles: list[dict[str, Any]], *, total: int | None = None, warehouses: Any = '["APP-TPF"]'
) -> bytes:
    meta: dict[str, Any] = {
        "total_articulos": len(articles) if total is None else total,
        "fecha_generacion": "2025-11-17T16:20:05.123Z",
    }
    if warehouses is not None:
        meta["almacences_filtrados"] = warehouses
    return encode({"meta": meta, "articulos": articles})


def sale(invoice: str = "C10-01-00000001", line: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid ``ventas[]`` item; ``overrides`` replace top-level keys."""
    item: dict[str, Any] = {
        "numero_factura": invoice,
        "fecha": "2025-11-17",
        "hora": "12:19:56.8966141",
        "fecha_hora_completa": "2025-11-17T12:19:56",
        "linea": line,
        "producto": [
            {
                "codigo_producto": "000001",
                "descripcion_producto": "HARINA DE MAIZ PRECOCIDA 1KG",
                "marca_producto": "DOÑA ARE",
                "modelo_producto": "",
                "categoria_producto": "01",
                "grupo_articulo": "HARINAS",
                "subgrupo_producto": "0101",
                "categoria_nombre": "VIVERES",
                "codigo_barras": "7591234000017",
                "serial": "",
                "imei": "",
            }
        ],
        "cantidad": [
            {
                "codigo_almacen": "APP-TPF",
                "nombre_almacen": "PISO DE VENTA PERIFERICO",
                "cantidad_vendida": Decimal(3),
                "peso_unitario": Decimal(1),
                "peso_bruto": Decimal(3),
                "volumen_unitario": Decimal(0),
                "unidad_medida_venta": "UNIDAD",
                "factor_unidad_medida": Decimal(1),
                "total_cantidad_por_unidad_medida": Decimal(3),
                "peso_calculado": Decimal(3),
            }
        ],
        "financiero": [
            {
                "costo_unitario_bs": Decimal("212.76"),
                "costo_unitario_usd": Decimal("0.9"),
                "precio_unitario_bs": Decimal("295.5"),
                "precio_unitario_usd": Decimal("1.25"),
                "impuesto_porcentaje": Decimal(0),
                "impuesto_monto": Decimal(0),
                "porcentaje_descuento": Decimal(0),
                "monto_descuento": Decimal(0),
                "venta_total_bs": Decimal("886.5"),
                "venta_total_usd": Decimal("3.75"),
                "costo_total_bs": Decimal("638.28"),
                "costo_total_usd": Decimal("2.7"),
                "utilidad_bruta_bs": Decimal("248.22"),
                "utilidad_bruta_usd": Decimal("1.05"),
            }
        ],
        "total_factura": Decimal("1158.67"),
        "tasa_usd": Decimal("236.4"),
        "es_no_fiscal": False,
        "tiene_promocion": "",
        "codigo_promocion": "",
    }
    item.update(overrides)
    return item


def with_part(item: dict[str, Any], part: str, **overrides: Any) -> dict[str, Any]:
    """A copy of a sale item with keys of ``producto[0]``/``cantidad[0]``/``financiero[0]`` set."""
    changed = copy.deepcopy(item)
    changed[part][0].update(overrides)
    return changed


def without(item: dict[str, Any], key: str, part: str | None = None) -> dict[str, Any]:
    changed = copy.deepcopy(item)
    del (changed[part][0] if part else changed)[key]
    return changed


def sales_body(items: list[dict[str, Any]], *, total: int | None = None) -> bytes:
    meta = {
        "sucursal_codigo": "SUC001",
        "fecha_desde": "2025-11-17",
        "fecha_hasta": "2025-11-17",
        "CodArticulo": None,
        "almacen": "APP-TPF",
        "total_registros": len(items) if total is None else total,
        "fecha_generacion": "2025-11-18T00:02:11.402Z",
    }
    return encode({"meta": meta, "ventas": items})


def warehouse(code: str = "APP-TPF", branch: str = "SUC001") -> dict[str, Any]:
    return {
        "NombreSucursal": "PERIFERICO",
        "CodigoSucursal": branch,
        "CodigoAlmacen": code,
        "NombreAlmacen": "PISO DE VENTA PERIFERICO",
    }


def decode_sales_both_ways(body: bytes, zone: ZoneInfo, warehouse_code: str = "APP-TPF") -> Any:
    """Decoded as a backfill does (no fingerprints) and as a scheduled window does (each line's
    bytes fingerprinted, nothing stored yet): both must give the same lines or the same error,
    which is raised."""
    plain = _outcome(lambda: decode_sales(body, warehouse_code=warehouse_code, zone=zone))
    scheduled = _outcome(
        lambda: decode_sales(
            body,
            warehouse_code=warehouse_code,
            zone=zone,
            seed=7,
            known=lambda: KnownLines(by_fingerprint={}),
        )
    )
    if isinstance(plain, Exception):
        assert type(scheduled) is type(plain), (scheduled, plain)
        assert str(scheduled) == str(plain)
        raise plain
    assert isinstance(scheduled, SalesBatch)
    assert [replace(line, fingerprint=None) for line in scheduled.lines] == list(plain.lines)
    assert replace(scheduled, lines=plain.lines) == plain
    return plain


def _outcome(decode: Callable[[], SalesBatch]) -> SalesBatch | Exception:
    try:
        return decode()
    except Exception as exc:
        return exc
