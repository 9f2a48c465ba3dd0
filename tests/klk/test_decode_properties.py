"""Decoder properties: nothing but KlkError escapes, and valid payloads round-trip exactly."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from klk_builders import article, catalogue_body, sale, sales_body

from fluxion_etl.domain.records import SalesLine
from fluxion_etl.errors import KlkError
from fluxion_etl.klk import wire
from fluxion_etl.klk.decode import (
    _catalogue_items_row_by_row,
    _sales_lines,
    _sales_lines_row_by_row,
    _Texts,
    article_fingerprints,
    catalogue_warehouses,
    decode_catalogue,
    decode_sales,
    decode_warehouses,
)

CARACAS = ZoneInfo("America/Caracas")

DECODERS: list[Callable[[bytes], object]] = [
    lambda body: decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS),
    lambda body: decode_catalogue(body, warehouse_code="APP-TPF"),
    lambda body: decode_warehouses(body, "almacenes/pisoventa"),
    catalogue_warehouses,
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _failure(decode: Callable[[bytes], object], body: bytes) -> KlkError | None:
    """Anything but a KlkError propagates and fails the test."""
    try:
        decode(body)
    except KlkError as exc:
        return exc
    return None


def _only_klk_errors(body: bytes) -> None:
    for decode in DECODERS:
        failure = _failure(decode, body)
        assert failure is None or failure.raw == body


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_klk_errors(body: bytes) -> None:
    _only_klk_errors(body)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_documents_raise_only_klk_errors(document: Any) -> None:
    _only_klk_errors(json.dumps(document).encode())


_VALID_BODIES = [
    sales_body([sale("A", 1), sale("A", 2)]),
    catalogue_body([article("1"), article("2")]),
]


@settings(max_examples=400)
@given(
    st.sampled_from(_VALID_BODIES).flatmap(
        lambda body: st.tuples(
            st.just(body),
            st.integers(0, len(body)),
            st.integers(0, 8),
            st.binary(min_size=1, max_size=6),
        )
    )
)
def test_valid_bodies_with_spliced_bytes_raise_only_klk_errors(
    case: tuple[bytes, int, int, bytes],
) -> None:
    body, at, cut, junk = case
    _only_klk_errors(body[:at] + junk + body[at + cut :])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside a JSON value."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    changed = copy.deepcopy(document)
    holder = changed
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return changed


_SALES_DOC = json.loads(sales_body([sale("A", 1), sale("A", 2)]))
_CATALOGUE_DOC = json.loads(catalogue_body([article("1"), article("2")]))


@settings(max_examples=400)
@given(
    st.sampled_from([_SALES_DOC, _CATALOGUE_DOC]).flatmap(
        lambda doc: st.tuples(st.just(doc), st.sampled_from(_paths(doc)), json_values)
    )
)
def test_any_single_field_replaced_raises_only_klk_errors(case: tuple[Any, Any, Any]) -> None:
    document, path, new = case
    _only_klk_errors(json.dumps(_replaced(document, path, new)).encode())


# --- round trip ----------------------------------------------------------------------------------

exact_numbers = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(-(10**12), 10**12),
    st.integers(0, 8),
)
safe_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20
)
codes = safe_text.map(str.strip).filter(lambda text: text not in ("", "N/A"))


def _expected_text(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", "N/A") else value


@st.composite
def sales_items(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
    moment = draw(st.times())
    seventh = draw(st.integers(0, 9))
    hora = f"{moment:%H:%M:%S}.{moment.microsecond:06d}{seventh}"
    item = sale(
        draw(codes),
        draw(st.integers(0, 2**31 - 1)),
        fecha=day.isoformat(),
        hora=hora,
        tasa_usd=draw(exact_numbers),
        es_no_fiscal=draw(st.booleans()),
        tiene_promocion=draw(st.sampled_from(["S", "", True, False])),
        codigo_promocion=draw(safe_text),
    )
    item["producto"][0].update(codigo_producto=draw(codes), marca_producto=draw(safe_text))
    item["cantidad"][0].update(cantidad_vendida=draw(exact_numbers))
    item["financiero"][0].update(
        venta_total_bs=draw(exact_numbers), venta_total_usd=draw(exact_numbers)
    )
    return item


def _check_line(line: SalesLine, item: dict[str, Any], zone: ZoneInfo) -> None:
    day = date.fromisoformat(item["fecha"])
    clock = time.fromisoformat(item["hora"][:15])
    assert line.sold_at == datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
    assert line.business_day == day
    assert str(line.exchange_rate) == str(item["tasa_usd"])
    assert str(line.quantity) == str(item["cantidad"][0]["cantidad_vendida"])
    assert str(line.total_bs) == str(item["financiero"][0]["venta_total_bs"])
    assert str(line.total_usd) == str(item["financiero"][0]["venta_total_usd"])
    assert line.sku == item["producto"][0]["codigo_producto"]
    assert line.brand == _expected_text(item["producto"][0]["marca_producto"])
    assert line.promotion_code == _expected_text(item["codigo_promocion"])
    assert line.is_non_fiscal is item["es_no_fiscal"]
    assert line.has_promotion is (item["tiene_promocion"] in ("S", True))


@settings(max_examples=150)
@given(
    st.lists(sales_items(), max_size=8, unique_by=lambda i: (i["numero_factura"], i["linea"])),
    st.sampled_from(["America/Caracas", "UTC", "Asia/Kolkata"]),
)
def test_valid_sales_round_trip_their_values(items: list[dict[str, Any]], zone_name: str) -> None:
    zone = ZoneInfo(zone_name)

    batch = decode_sales(sales_body(items), warehouse_code="APP-TPF", zone=zone)
    assert batch.duplicates_removed == 0
    assert [line.key for line in batch.lines] == [(i["numero_factura"], i["linea"]) for i in items]
    for line, item in zip(batch.lines, items, strict=True):
        _check_line(line, item, zone)


@settings(max_examples=150)
@given(
    st.lists(
        st.builds(
            lambda sku, stock, price, brand: article(sku, stock=stock, Precio=price, Marca=brand),
            codes,
            exact_numbers,
            exact_numbers,
            safe_text,
        ),
        max_size=8,
        unique_by=lambda a: a["Codigo"],
    )
)
def test_valid_catalogues_round_trip_their_values(articles: list[dict[str, Any]]) -> None:
    catalogue = decode_catalogue(catalogue_body(articles), warehouse_code="APP-TPF")

    assert [item.sku for item in catalogue.items] == [a["Codigo"] for a in articles]
    for item, source in zip(catalogue.items, articles, strict=True):
        assert str(item.stock) == str(source["stock"])
        assert str(item.price_usd) == str(source["Precio"])
        assert item.brand == _expected_text(source["Marca"])


_article_texts = st.sampled_from(["", " ", "N/A", " N/A ", "X", " X ", "VIVERES", "0101", None])


@settings(max_examples=200)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "Codigo": st.sampled_from(["000001", " 000001", "000002 ", "000003"]),
                "Barra": _article_texts,
                "NombreProducto": _article_texts,
                "Categoria": _article_texts,
                "Subcategoria": _article_texts,
                "Descripcion": _article_texts,
                "Descripcion_categoria": _article_texts,
                "Marca": _article_texts,
                "stock": st.sampled_from([Decimal("-1.5"), Decimal(0), Decimal("2.50")]),
            }
        ),
        max_size=12,
    )
)
def test_the_fast_catalogue_path_gives_what_the_row_by_row_path_gives(
    overrides: list[dict[str, Any]],
) -> None:
    """The whole-catalogue fast path (texts cleaned in place, records built by msgspec) and the
    row-by-row path that names errors agree on every article, duplicates included."""
    articles = [article(**{k: v for k, v in o.items() if v is not None}) for o in overrides]
    body = catalogue_body(articles)
    decoded = decode_catalogue(body, warehouse_code="APP-TPF")
    raw = msgspec.json.decode(body, type=dict[str, msgspec.Raw])["articulos"]
    rows = msgspec.json.decode(raw, type=list[wire.Article])
    each = msgspec.json.decode(raw, type=list[msgspec.Raw])
    for row, fingerprint in zip(rows, article_fingerprints(each), strict=True):
        row.fingerprint = fingerprint
    reference = _catalogue_items_row_by_row(rows)
    assert decoded.items == tuple(reference.values())
    assert decoded.duplicates_removed == len(articles) - len(reference)


_sale_texts = st.sampled_from(["", " ", "N/A", " N/A ", "X", " X ", "VIVERES", "0101", None])
_flags = st.sampled_from([True, False, "S", "N", "", " si ", "1", "0", None])


@settings(max_examples=200)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "numero_factura": st.sampled_from(["F1", " F1", "F2 ", "F3"]),
                "linea": st.integers(0, 2),
                "hora": st.sampled_from(["08:00:00", "08:00:00.1234567", "23:59:59"]),
                "es_no_fiscal": _flags.filter(lambda flag: flag is not None),
                "tiene_promocion": _flags,
                "codigo_promocion": _sale_texts,
                "marca_producto": _sale_texts,
                "nombre_almacen": _sale_texts,
                "cantidad_vendida": st.sampled_from([Decimal("-1.5"), Decimal(0), Decimal("2.50")]),
            }
        ),
        max_size=12,
    ),
    st.sampled_from(["America/Caracas", "UTC", "Asia/Kolkata"]),
)
def test_the_fast_sales_path_gives_what_the_row_by_row_path_gives(
    overrides: list[dict[str, Any]], zone_name: str
) -> None:
    """The whole-payload fast path (a dict a line, records built by msgspec) and the row-by-row
    path that names errors agree on every line: texts, flags, UTC instants, duplicates (the first
    of a key wins)."""
    zone = ZoneInfo(zone_name)
    items = []
    for o in overrides:
        item = sale(
            o["numero_factura"],
            o["linea"],
            hora=o["hora"],
            es_no_fiscal=o["es_no_fiscal"],
            tiene_promocion=o["tiene_promocion"],
            codigo_promocion=o["codigo_promocion"],
        )
        item["producto"][0]["marca_producto"] = o["marca_producto"]
        item["cantidad"][0].update(
            nombre_almacen=o["nombre_almacen"], cantidad_vendida=o["cantidad_vendida"]
        )
        items.append(item)
    body = sales_body(items)
    raw = msgspec.json.decode(body, type=dict[str, msgspec.Raw])["ventas"]
    rows = msgspec.json.decode(raw, type=list[wire.Sale])
    fast = _sales_lines(rows, "APP-TPF", zone, _Texts())
    reference = _sales_lines_row_by_row(rows, "APP-TPF", zone, _Texts(), check=True)
    assert fast == reference
    assert list(fast or {}) == list(reference)
    decoded = decode_sales(body, warehouse_code="APP-TPF", zone=zone)
    assert decoded.lines == tuple(reference.values())
    assert decoded.duplicates_removed == len(items) - len(reference)


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"es_no_fiscal": "MAYBE"}, "$.ventas[1].es_no_fiscal"),
        ({"hora": "25:00:00"}, "$.ventas[1].hora"),
        ({"linea": -1}, "$.ventas[1].linea"),
        ({"numero_factura": "N/A"}, "$.ventas[1].numero_factura"),
        ({"producto": []}, "$.ventas[1].producto"),
    ],
)
def test_a_bad_line_is_named_whatever_path_decodes_the_rest(
    override: dict[str, Any], path: str
) -> None:
    body = sales_body([sale("F1", 1), sale("F2", 1, **override), sale("F3", 1)])
    with pytest.raises(KlkError) as caught:
        decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS)
    assert caught.value.category.value == "bad_payload"
    assert path in str(caught.value)
    assert caught.value.raw == body
