"""Reading KLK request bodies the way KLK spells them (``Codigoalmacen``, ``CodigoSucursal``…)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from fluxion_etl.sim.sales import TICKS_PER_SECOND
from fluxion_etl.sim.world import MAX_DAYS_PER_QUERY, SalesFilter

_HOUR = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class QueryError(ValueError):
    """A body KLK would reject; answered HTTP 400 ``{"error": ...}``."""


@dataclass(frozen=True, slots=True)
class SalesRequest:
    branch: str
    filter: SalesFilter
    echo: dict[str, Any]


def codes(body: Any, key: str) -> list[str]:
    """``{"Codigoalmacen": "X"}``, ``{"Codigoalmacen": ["X", "Y"]}`` or ``[{...}, {...}]``."""
    items = body if isinstance(body, list) else [body]
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict) or key not in item:
            raise QueryError(f"falta el campo {key}")
        value = item[key]
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise QueryError(f"{key} debe ser texto o lista de textos")
        out += values
    return out


def sales_request(body: Any) -> SalesRequest:
    if not isinstance(body, dict):
        raise QueryError("el cuerpo debe ser un objeto JSON")
    branch = _text(body, "sucursal", required=True)
    desde, hasta = _date(body, "fecha_desde"), _date(body, "fecha_hasta")
    if (hasta - desde).days >= MAX_DAYS_PER_QUERY:
        raise QueryError(f"el rango de fechas supera {MAX_DAYS_PER_QUERY} días")
    hora_desde, hora_hasta = _text(body, "hora_desde"), _text(body, "hora_hasta")
    article = body.get("CodArticulo")
    if isinstance(article, int) and not isinstance(article, bool):
        article = f"{article:06d}"
    elif article is not None and not isinstance(article, str):
        raise QueryError("CodArticulo debe ser texto")
    warehouse = _text(body, "almacen")
    query = SalesFilter(
        date_from=desde,
        date_to=hasta,
        warehouse=warehouse,
        article=article or None,
        ticks_from=None if hora_desde is None else hour_ticks(hora_desde),
        ticks_to=None if hora_hasta is None else hour_ticks(hora_hasta),
    )
    echo = {
        "sucursal_codigo": branch,
        "fecha_desde": desde.isoformat(),
        "fecha_hasta": hasta.isoformat(),
        "hora_desde": hora_desde,
        "hora_hasta": hora_hasta,
        "CodArticulo": article or None,
        "almacen": warehouse,
    }
    return SalesRequest(branch=str(branch), filter=query, echo=echo)


def hour_ticks(text: str) -> int:
    """``HH:MM`` (= HH:MM:00), ``HH:MM:SS`` or ``HH:MM:SS.fffffff`` as 100 ns ticks since midnight.

    Compared with a line's full-precision time, inclusive at both ends, as SQL Server compares a
    ``time(7)`` column with a literal: ``hora_hasta`` ``12:30`` does not include 12:30:00.5.
    """
    match = _HOUR.match(text)
    if not match:
        raise QueryError(f"hora inválida {text!r}: use HH:MM o HH:MM:SS")
    hh, mm, ss, frac = match.groups()
    if int(hh) > 23 or int(mm) > 59 or int(ss or 0) > 59:
        raise QueryError(f"hora inválida {text!r}")
    seconds = int(hh) * 3600 + int(mm) * 60 + int(ss or 0)
    return seconds * TICKS_PER_SECOND + int((frac or "0").ljust(7, "0"))


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise QueryError(f"falta el campo {key}")
        return None
    if not isinstance(value, str):
        raise QueryError(f"{key} debe ser texto")
    return value


def _date(body: dict[str, Any], key: str) -> date:
    value = _text(body, key, required=True)
    if value is None or not _DATE.match(value):
        raise QueryError(f"{key} debe ser YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{key} no es una fecha: {value!r}") from None
