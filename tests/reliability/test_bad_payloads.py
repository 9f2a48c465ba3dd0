"""Bad input from KLK: megabytes, deep nesting, huge numbers, impossible dates and times, hostile
unicode, over-long texts. Each payload is decoded correctly or refused whole as ``bad_payload``
(never another exception), whatever decodes can be stored on both dialects, and through the
runner one bad row among good ones loads nothing of its location (rows, coverage and watermark
stay as they were) while the other locations load.

The decoder's basic refusals (wrong types, missing keys, NUL, splices, arbitrary bytes) are in
tests/klk; these are the adversarial cases beyond them.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from engine_support import (
    STORES,
    TODAY,
    Chain,
    assert_inventory_equal_served,
    assert_sales_equal_served,
    coverage_of,
    http_transport,
    sales_stamps,
    stored_sales,
    stored_stock,
    watermark_of,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from klk_builders import (
    article,
    catalogue_body,
    decode_sales_both_ways,
    encode,
    sale,
    sales_body,
    with_part,
)
from sqlalchemy import select

from fluxion_etl.domain.records import CatalogueItem, SalesLine
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase, ItemStatus, Job, RunStatus
from fluxion_etl.errors import KlkBadPayloadError, KlkCountMismatchError, KlkError
from fluxion_etl.klk import limits, wire
from fluxion_etl.klk.decode import (
    catalogue_warehouses,
    decode_catalogue,
    decode_warehouses,
)
from fluxion_etl.store.schema import products, raw_payloads, sales_lines

CARACAS = ZoneInfo("America/Caracas")
MEGABYTES_5 = 5 * 1024 * 1024
SPOT = "__SPOT__"  # a placeholder string, replaced by raw JSON bytes after encoding


def _sales(body: bytes) -> Any:
    return decode_sales_both_ways(body, CARACAS)


def _catalogue(body: bytes) -> Any:
    return decode_catalogue(body, warehouse_code="APP-TPF")


DECODERS: dict[str, Callable[[bytes], object]] = {
    "sales": _sales,
    "catalogue": _catalogue,
    "warehouses": lambda body: decode_warehouses(body, "almacenes/pisoventa"),
    "filtered warehouses": catalogue_warehouses,
}


def _spot(body: bytes, literal: bytes) -> bytes:
    """``body`` with the one placeholder value replaced by ``literal`` (raw JSON)."""
    quoted = json.dumps(SPOT).encode()
    assert body.count(quoted) == 1
    return body.replace(quoted, literal)


def _refused(decode: Callable[[bytes], object], body: bytes) -> KlkError:
    """The decoder's refusal; anything else (a crash, a success) fails the test."""
    with pytest.raises(KlkError) as caught:
        decode(body)
    assert caught.value.raw == body, "the body is kept for inspection"
    return caught.value


# --- megabytes -----------------------------------------------------------------------------------


def test_a_five_megabyte_sales_body_decodes_whole() -> None:
    items = [
        with_part(sale(f"C10-{n:08d}", 1 + n % 9), "cantidad", cantidad_vendida=Decimal(n))
        for n in range(4500)
    ]
    body = sales_body(items)

    batch = _sales(body)

    assert len(body) > MEGABYTES_5
    assert len(batch.lines) == batch.declared_count == 4500
    assert [line.quantity for line in batch.lines] == [Decimal(n) for n in range(4500)]
    assert batch.lines[-1].key == ("C10-00004499", 1 + 4499 % 9)


def test_a_five_megabyte_catalogue_decodes_whole() -> None:
    articles = [article(f"{n:06d}", stock=Decimal(n) / 4) for n in range(21_500)]
    body = catalogue_body(articles)

    catalogue = _catalogue(body)

    assert len(body) > MEGABYTES_5
    assert [item.sku for item in catalogue.items] == [f"{n:06d}" for n in range(21_500)]
    assert catalogue.items[-1].stock == Decimal("5374.75")


def _garbage() -> dict[str, bytes]:
    rng = random.Random(20260105)
    valid = sales_body([sale("A", 1)])
    rows = MEGABYTES_5 // 8
    return {
        "random bytes": rng.randbytes(MEGABYTES_5),
        "opening brackets": b"[" * MEGABYTES_5,
        "one huge string": b'"' + b"x" * MEGABYTES_5 + b'"',
        "numbers where rows go": encode(
            {"meta": {"total_registros": rows, "total_articulos": rows}, "ventas": [7] * rows}
            | {"articulos": [7] * rows}
        ),
        "valid body then junk": valid + rng.randbytes(MEGABYTES_5),
        "whitespace only": b" \n\t" * (MEGABYTES_5 // 3),
        "NUL bytes": b"\x00" * MEGABYTES_5,
    }


GARBAGE = _garbage()


@pytest.mark.parametrize("decoder", ["sales", "catalogue"])
@pytest.mark.parametrize("name", GARBAGE)
def test_five_megabytes_of_garbage_are_a_bad_payload(decoder: str, name: str) -> None:
    failure = _refused(DECODERS[decoder], GARBAGE[name])

    assert isinstance(failure, KlkBadPayloadError)
    assert failure.category is ErrorCategory.BAD_PAYLOAD


# --- deep nesting --------------------------------------------------------------------------------


def _nested(depth: int, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _deep_bodies() -> dict[str, bytes]:
    deep = _nested(10_000)
    row = sales_body([sale("A", 1), sale("B", 1, producto=SPOT)])
    item = catalogue_body([article("1"), article("2", Marca=SPOT)])
    return {
        "10,000 arrays": deep,
        "10,000 objects": _nested(10_000, "object"),
        "100,000 arrays": _nested(100_000),
        "in meta": b'{"meta": ' + deep + b', "ventas": [], "articulos": []}',
        "in a sales row": _spot(row, deep),
        "in an article": _spot(item, deep),
        "as the error": b'{"error": ' + deep + b"}",
    }


DEEP = _deep_bodies()


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", DEEP)
def test_deep_nesting_is_a_bad_payload_not_a_recursion_error(decoder: str, name: str) -> None:
    failure = _refused(DECODERS[decoder], DEEP[name])

    assert failure.category in (ErrorCategory.BAD_PAYLOAD, ErrorCategory.ERROR_BODY)


# --- huge numbers --------------------------------------------------------------------------------

HUGE = {
    "1e400": b"1e400",
    "-1e400": b"-1e400",
    "400 digits": b"1" + b"0" * 400,
    "1e-400": b"1e-400",
    "400 decimal places": b"0." + b"0" * 400 + b"1",
    "exponent beyond any decimal": b"1e99999999999999999999",
    "1e15": b"1e15",
}
SALES_NUMBER_FIELDS = {
    "linea": ("linea", None),
    "cantidad_vendida": ("cantidad", "cantidad_vendida"),
    "venta_total_bs": ("financiero", "venta_total_bs"),
    "costo_unitario_usd": ("financiero", "costo_unitario_usd"),
    "tasa_usd": ("tasa_usd", None),
    "total_factura": ("total_factura", None),
}


def _sale_with(field: tuple[str, str | None], value: object) -> dict[str, Any]:
    key, inner = field
    item = sale("B", 1)
    if inner is None:
        item[key] = value
    else:
        item[key][0][inner] = value
    return item


@pytest.mark.parametrize("literal", HUGE.values(), ids=HUGE.keys())
@pytest.mark.parametrize("field", SALES_NUMBER_FIELDS, ids=str)
def test_a_huge_number_in_a_sales_line_is_a_bad_payload_naming_it(
    field: str, literal: bytes
) -> None:
    body = _spot(sales_body([sale("A", 1), _sale_with(SALES_NUMBER_FIELDS[field], SPOT)]), literal)

    failure = _refused(_sales, body)

    assert isinstance(failure, KlkBadPayloadError)
    assert field in str(failure)
    assert "$.ventas[1]" in str(failure)


@pytest.mark.parametrize("literal", HUGE.values(), ids=HUGE.keys())
@pytest.mark.parametrize("field", ["Precio", "stock", "Iva"])
def test_a_huge_number_in_an_article_is_a_bad_payload_naming_it(field: str, literal: bytes) -> None:
    body = _spot(catalogue_body([article("1"), article("2", **{field: SPOT})]), literal)

    failure = _refused(_catalogue, body)

    assert isinstance(failure, KlkBadPayloadError)
    assert f"$.articulos[1].{field}" in str(failure)


def test_a_huge_row_count_in_meta_is_refused() -> None:
    body = sales_body([sale("A", 1)], total=10**400)

    assert isinstance(_refused(_sales, body), KlkCountMismatchError)


def test_the_largest_plausible_numbers_still_decode_exactly() -> None:
    big, small = Decimal("999999999999999.99999999"), Decimal("1E-12")
    item = with_part(sale(), "financiero", venta_total_bs=big, costo_unitario_usd=small)

    line = _sales(sales_body([item])).lines[0]

    assert (line.total_bs, line.unit_cost_usd) == (big, small)


# --- impossible dates and times ------------------------------------------------------------------

BAD_FECHA = [
    "2025-02-30",
    "2025-02-29",
    "2025-04-31",
    "2025-13-01",
    "2025-00-10",
    "0000-01-01",
    "1900-01-01",
    "9999-12-31",
    "2025-1-5",
    "17/11/2025",
    "",
    "٢٠٢٥-١١-١٧",  # Arabic-Indic digits
    20251117,
    None,
]
BAD_HORA = [
    "25:61:00",
    "23:61:00",
    "23:59:60",
    "24:00:00",
    "-1:00:00",
    "12:00",
    "12:00:00.1234567890",
    "12:00:00Z",
    "12:00:00-04:00",
    " 12:00:00",
    "１２:００:００",  # full-width digits
    "٠٧:٠٠:٠٠",  # Arabic-Indic digits
    "",
    120000,
    None,
]


@pytest.mark.parametrize("fecha", BAD_FECHA, ids=repr)
def test_an_impossible_date_is_a_bad_payload_naming_it(fecha: object) -> None:
    failure = _refused(_sales, sales_body([sale("A", 1), sale("B", 1, fecha=fecha)]))

    assert isinstance(failure, KlkBadPayloadError)
    assert "$.ventas[1].fecha" in str(failure)


@pytest.mark.parametrize("hora", BAD_HORA, ids=repr)
def test_an_impossible_time_is_a_bad_payload_naming_it(hora: object) -> None:
    failure = _refused(_sales, sales_body([sale("A", 1), sale("B", 1, hora=hora)]))

    assert isinstance(failure, KlkBadPayloadError)
    assert "$.ventas[1].hora" in str(failure)


def test_a_leap_day_and_the_last_instant_of_a_day_decode() -> None:
    item = sale(fecha="2024-02-29", hora="23:59:59.9999999")

    line = _sales(sales_body([item])).lines[0]

    local = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=CARACAS)
    assert (line.sold_at, line.business_day) == (local.astimezone(UTC), date(2024, 2, 29))


def test_an_unreadable_generation_time_in_meta_is_dropped_not_fatal() -> None:
    body = sales_body([sale()]).replace(b"2025-11-18T00:02:11.402Z", b"2025-02-30T25:61:00")

    assert _sales(body).generated_at is None


# --- unicode -------------------------------------------------------------------------------------

# Raw JSON string literals (escapes as KLK's serializer might write them).
REFUSED_TEXTS = {
    "escaped NUL": rb'"0001\u0000"',
    "lone high surrogate": rb'"HARINA \ud800"',
    "lone low surrogate": rb'"\udfff HARINA"',
    "surrogates in the wrong order": rb'"\ude00\ud83d"',
    "overlong UTF-8": b'"\xc0\xaf"',
    "UTF-8 of a surrogate": b'"\xed\xa0\x80"',
    "truncated UTF-8": b'"\xe2\x82"',
    "Latin-1 byte": b'"MA\xd1ONGO"',
}
KEPT_TEXTS = {
    "right-to-left override": "\u202eODACREM",
    "Arabic": "مرحبا بالعالم",
    "Hebrew": "שלום",
    "emoji": "🍌🥑",
    "emoji family (joiners)": "👩‍👩‍👧",
    "combining accents": "Man\u0303ongo",
    "Devanagari": "नमस्ते",
    "a control character": "A\u0007B",
    "the last code point": "\U0010ffff",
}


@pytest.mark.parametrize("literal", REFUSED_TEXTS.values(), ids=REFUSED_TEXTS.keys())
@pytest.mark.parametrize("where", ["codigo_producto", "descripcion_producto"])
def test_text_no_database_can_hold_is_a_bad_payload(where: str, literal: bytes) -> None:
    item = with_part(sale("B", 1), "producto", **{where: SPOT})

    failure = _refused(_sales, _spot(sales_body([sale("A", 1), item]), literal))

    assert isinstance(failure, KlkBadPayloadError)


@pytest.mark.parametrize("text", KEPT_TEXTS.values(), ids=KEPT_TEXTS.keys())
def test_any_other_unicode_is_kept_exactly_escaped_or_not(text: str) -> None:
    item = with_part(sale(), "producto", descripcion_producto=text, marca_producto=text)
    escaped = json.dumps(text).encode()  # \uXXXX escapes, astral planes as surrogate pairs

    plain = _sales(sales_body([item])).lines[0]
    via_escapes = _sales(
        _spot(sales_body([with_part(item, "producto", marca_producto=SPOT)]), escaped)
    )

    assert plain.product_description == plain.brand == text
    assert via_escapes.lines[0].brand == text


# --- texts wider than the store's columns ---------------------------------------------------------


@pytest.mark.parametrize("name", limits.SALES_WIDTHS)
def test_a_sales_text_wider_than_its_column_is_a_bad_payload_naming_it(name: str) -> None:
    path, width = limits.SALES_WIDTHS[name]
    part, _, key = path.removeprefix(".").partition("[0].")
    item = sale("B", 1)
    if key:
        item[part][0][key] = "Ñ" * (width + 1)
    else:
        item[part] = "Ñ" * (width + 1)

    failure = _refused(_sales, sales_body([sale("A", 1), item]))

    assert isinstance(failure, KlkBadPayloadError)
    assert f"$.ventas[1]{path}" in str(failure)


@pytest.mark.parametrize("name", limits.CATALOGUE_WIDTHS)
def test_an_article_text_wider_than_its_column_is_a_bad_payload_naming_it(name: str) -> None:
    path, width = limits.CATALOGUE_WIDTHS[name]

    body = catalogue_body([article("1"), article("2", **{path[1:]: "9" * (width + 1)})])

    assert f"$.articulos[1]{path}" in str(_refused(_catalogue, body))


def test_texts_exactly_as_wide_as_their_columns_decode_and_padding_does_not_count() -> None:
    item = with_part(sale(), "producto", descripcion_producto="D" * 300 + "     ")
    item = with_part(item, "cantidad", unidad_medida_venta="U" * 16)

    line = _sales(sales_body([item])).lines[0]

    assert (line.product_description, line.sales_unit) == ("D" * 300, "U" * 16)


def test_the_decoders_widths_are_the_columns_widths() -> None:
    for widths, table in ((limits.SALES_WIDTHS, sales_lines), (limits.CATALOGUE_WIDTHS, products)):
        for name, (_, width) in widths.items():
            assert table.c[name].type.length == width, f"{table.name}.{name}"  # type: ignore[attr-defined]
    text_fields = {
        f for f, kind in SalesLine.__annotations__.items() if kind in ("str", "str | None")
    }
    assert set(limits.SALES_WIDTHS) == text_fields, "every text of a sales line is checked"
    article_texts = {
        f for f, kind in CatalogueItem.__annotations__.items() if kind in ("str", "str | None")
    }
    assert set(limits.CATALOGUE_WIDTHS) == article_texts


# --- any adversarial value anywhere --------------------------------------------------------------

adversarial = st.one_of(
    st.sampled_from(
        [10**400, -(10**400), 10**15, 2**63, -1, 0, "NaN", "Infinity", "1e400", True, None, ""]
    ),
    st.sampled_from(BAD_FECHA[:-2] + BAD_HORA[:-2]),
    st.sampled_from(list(KEPT_TEXTS.values())),
    st.text(max_size=8),
    st.sampled_from(["\ud800", "A\udfffB", "\x00", "\ufeff", "N/A", "   "]),  # json.dumps escapes
    st.text(st.sampled_from("Ñ x"), min_size=299, max_size=420),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=30),
    st.dictionaries(st.sampled_from(["", "error", "meta", "0"]), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


_SALES_DOC = json.loads(sales_body([sale("A", 1), sale("B", 2)]))
_CATALOGUE_DOC = json.loads(catalogue_body([article("1"), article("2")]))


def _storable(record: SalesLine | CatalogueItem, widths: dict[str, tuple[str, int]]) -> None:
    """What a decoder lets through can be written to either database as it is."""
    for name, value in ((f.name, getattr(record, f.name)) for f in fields(record)):
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate
            assert "\x00" not in value
            assert name not in widths or len(value) <= widths[name][1]
        elif isinstance(value, Decimal):
            assert wire.is_plausible(value), (name, value)
        elif isinstance(value, datetime):
            assert value.tzinfo is not None


def _decoded_or_none(decode: Callable[[bytes], object], body: bytes) -> object | None:
    """The decoded payload, or None when the decoder refused it (as a KlkError keeping it)."""
    failure: KlkError | None = None
    try:
        return decode(body)
    except KlkError as exc:
        failure = exc
    assert failure.raw == body
    return None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["sales", "catalogue"]).flatmap(
        lambda kind: st.tuples(
            st.just(kind),
            st.sampled_from(_paths(_SALES_DOC if kind == "sales" else _CATALOGUE_DOC)),
            adversarial,
        )
    )
)
def test_any_adversarial_value_anywhere_is_decoded_storably_or_refused(
    case: tuple[str, tuple[Any, ...], Any],
) -> None:
    kind, path, value = case
    document = copy.deepcopy(_SALES_DOC if kind == "sales" else _CATALOGUE_DOC)
    holder = document
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    body = json.dumps(document).encode()

    decoded = _decoded_or_none(DECODERS[kind], body)
    if decoded is None:
        return
    if kind == "sales":
        for line in decoded.lines:  # type: ignore[attr-defined]
            _storable(line, dict(limits.SALES_WIDTHS))
    else:
        for item in decoded.items:  # type: ignore[attr-defined]
            _storable(item, dict(limits.CATALOGUE_WIDTHS))


# --- through the runner: one bad row loads nothing of its location -------------------------------

FAULTY = "tienda_02"
HALF_HOUR = 30 * 60
HEALTHY = tuple(store for store in STORES if store != FAULTY)


class _OneBadRow(httpx.BaseTransport):
    """KLK as the simulator answers, except that each answer of ``call`` for one warehouse carries
    ``literal`` (raw JSON) as the value of ``field`` in its middle row (when it has three or more).
    ``field`` is a path inside the row: ``("fecha",)``, ``("producto", 0, "descripcion_producto")``.
    """

    def __init__(self, warehouse: str, call: str, field: tuple[Any, ...], literal: bytes) -> None:
        self.marker, self.call = json.dumps(warehouse).encode(), call
        self.field, self.literal = field, literal
        self.spoiled = 0
        self._inner = http_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._inner.handle_request(request)
        if request.url.path != self.call or self.marker not in request.read():
            return answer
        body = answer.read()
        document = json.loads(body, parse_float=Decimal)
        rows = document.get("ventas", document.get("articulos"))
        if not isinstance(rows, list) or len(rows) < 3:
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)
        holder = rows[len(rows) // 2]
        for step in self.field[:-1]:
            holder = holder[step]
        holder[self.field[-1]] = SPOT
        self.spoiled += 1
        content = _spot(encode(document), self.literal)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=content)

    def close(self) -> None:
        self._inner.close()


SALES_SPOILS = {
    "impossible date": (("fecha",), b'"2025-02-30"'),
    "lone surrogate": (("producto", 0, "descripcion_producto"), rb'"\ud800"'),
    "huge number": (("cantidad", 0, "cantidad_vendida"), b"1e400"),
    "text wider than its column": (
        ("producto", 0, "descripcion_producto"),
        b'"' + b"X" * 301 + b'"',
    ),
}


def _state(chain: Chain, location_id: str) -> tuple[Any, ...]:
    return (
        sales_stamps(chain.engine, location_id),
        coverage_of(chain.engine, location_id),
        watermark_of(chain.engine, location_id),
    )


@pytest.mark.parametrize("spoil", SALES_SPOILS, ids=str)
def test_one_bad_sales_row_loads_nothing_of_its_location(chain: Chain, spoil: str) -> None:
    first = chain.run(Job.SALES)
    before = _state(chain, FAULTY)
    chain.clock.advance(HALF_HOUR)
    warehouse = chain.config.location(FAULTY).warehouses[0].code
    transport = _OneBadRow(warehouse, "/ventas", *SALES_SPOILS[spoil])

    second = chain.run(Job.SALES, rt=chain.runtime(transport))

    assert first.status is RunStatus.SUCCEEDED
    assert transport.spoiled == 1, "one answer carried the bad row"
    assert second.status is RunStatus.PARTIAL
    failed = second.items[FAULTY]
    assert (failed.status, failed.error_category, failed.error_phase) == (
        ItemStatus.FAILED,
        ErrorCategory.BAD_PAYLOAD,
        ErrorPhase.TRANSFORM,
    )
    where = re.search(r"\$\.ventas\[\d+\]|byte \d+", failed.error_message or "")
    assert where is not None, "the message points at the row (or the byte, for broken JSON)"
    assert failed.inserted == failed.updated == 0
    assert _state(chain, FAULTY) == before, "no row, coverage or watermark of that payload"
    with chain.engine.connect() as conn:
        kept = conn.execute(
            select(raw_payloads.c.location_id, raw_payloads.c.category).where(
                raw_payloads.c.run_id == second.run.id
            )
        ).all()
    assert [tuple(row) for row in kept] == [(FAULTY, "bad_payload")]
    for store in HEALTHY:
        assert second.items[store].status is ItemStatus.SUCCEEDED
        assert_sales_equal_served(chain, store, [TODAY])


def test_a_first_sync_with_one_bad_row_stores_nothing_of_that_location(chain: Chain) -> None:
    warehouse = chain.config.location(FAULTY).warehouses[0].code
    transport = _OneBadRow(warehouse, "/ventas", ("fecha",), b'"2025-02-30"')

    run = chain.run(Job.SALES, rt=chain.runtime(transport))

    assert transport.spoiled >= 1
    assert run.items[FAULTY].error_category is ErrorCategory.BAD_PAYLOAD
    assert _state(chain, FAULTY) == ({}, [], None)


def test_one_bad_article_changes_no_stock_of_its_location(chain: Chain) -> None:
    chain.run(Job.INVENTORY)
    warehouse = chain.config.location(FAULTY).warehouses[0].code
    before = stored_stock(chain.engine, FAULTY, warehouse)
    chain.clock.advance(HALF_HOUR)  # stock moves as the stores sell
    transport = _OneBadRow(warehouse, "/maestra/articulos/almacen", ("stock",), b'"NaN"')

    run = chain.run(Job.INVENTORY, rt=chain.runtime(transport))

    assert transport.spoiled == 1
    assert run.items[FAULTY].error_category is ErrorCategory.BAD_PAYLOAD
    assert stored_stock(chain.engine, FAULTY, warehouse) == before
    for loc in HEALTHY:
        assert run.items[loc].status is ItemStatus.SUCCEEDED
        assert_inventory_equal_served(chain, loc)


def test_hostile_unicode_is_stored_and_read_back_exactly(chain: Chain) -> None:
    text = "".join(KEPT_TEXTS.values())[:200]
    warehouse = chain.config.location(FAULTY).warehouses[0].code
    literal = json.dumps(text).encode()
    transport = _OneBadRow(warehouse, "/ventas", ("producto", 0, "marca_producto"), literal)

    run = chain.run(Job.SALES, rt=chain.runtime(transport))

    assert run.items[FAULTY].status is ItemStatus.SUCCEEDED
    brands = [row["brand"] for row in stored_sales(chain.engine, FAULTY).values()]
    assert brands.count(text) == transport.spoiled >= 1
