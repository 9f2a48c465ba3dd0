"""Decoder rules beyond the samples: exact numbers, duplicates, every way a payload is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from klk_builders import (
    article,
    catalogue_body,
    decode_sales_both_ways,
    encode,
    sale,
    sales_body,
    warehouse,
    with_part,
    without,
)
from tests.conftest import SAMPLES

from fluxion_etl.errors import (
    KlkBadPayloadError,
    KlkCountMismatchError,
    KlkErrorBodyError,
)
from fluxion_etl.klk.decode import (
    catalogue_warehouses,
    decode_catalogue,
    decode_sales,
    decode_warehouses,
)

CARACAS = ZoneInfo("America/Caracas")


def _sales(body: bytes) -> Any:
    return decode_sales_both_ways(body, CARACAS)


def _catalogue(body: bytes) -> Any:
    return decode_catalogue(body, warehouse_code="APP-TPF")


# --- exact numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["0.1", "2.675", "1E-7", "12345678901234.56789", "-3.415"])
def test_numbers_are_taken_from_the_json_literal_not_a_float(literal: str) -> None:
    body = catalogue_body([article(stock=Decimal(literal), Precio=Decimal(literal))])

    item = _catalogue(body).items[0]
    assert str(item.stock) == literal
    assert item.price_usd == Decimal(literal)
    assert item.stock.as_tuple() == Decimal(literal).as_tuple()


def test_float_detour_would_have_changed_these_values() -> None:
    """Guards the test above: the literals are ones a binary float cannot hold exactly."""
    assert Decimal(float("2.675")) != Decimal("2.675")
    assert Decimal(float("0.1")) != Decimal("0.1")


def test_sales_money_fields_are_exact() -> None:
    item = with_part(sale(), "financiero", venta_total_bs=Decimal("12345678901234.56789"))
    item = with_part(item, "cantidad", cantidad_vendida=Decimal("1E-7"))

    line = _sales(sales_body([item])).lines[0]
    assert str(line.total_bs) == "12345678901234.56789"
    assert line.quantity == Decimal("0.0000001")


# --- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hora", "expected"),
    [
        ("23:59:59.9999999", time(23, 59, 59, 999999)),
        ("00:00:00", time(0, 0)),
        ("07:05:01.5", time(7, 5, 1, 500000)),
        ("12:19:56.8966149", time(12, 19, 56, 896614)),
    ],
)
def test_hora_is_truncated_to_microseconds_never_rounded(hora: str, expected: time) -> None:
    line = _sales(sales_body([sale(hora=hora)])).lines[0]

    local = line.sold_at.astimezone(CARACAS)
    assert local.time() == expected
    assert local.date() == line.business_day


def test_sold_at_uses_the_zone_given() -> None:
    line = decode_sales(
        sales_body([sale(hora="10:00:00")]), warehouse_code="APP-TPF", zone=ZoneInfo("UTC")
    ).lines[0]

    assert line.sold_at == datetime(2025, 11, 17, 10, 0, tzinfo=UTC)


# --- duplicates and flags ------------------------------------------------------------------------


def test_duplicate_sales_lines_are_kept_once_and_counted() -> None:
    items = [sale("A", 1), sale("A", 2), sale("A", 1), sale("B", 1), sale("A", 1)]

    batch = _sales(sales_body(items))
    assert [line.key for line in batch.lines] == [("A", 1), ("A", 2), ("B", 1)]
    assert batch.duplicates_removed == 2
    assert batch.declared_count == 5


def test_same_invoice_number_in_another_line_is_not_a_duplicate() -> None:
    batch = _sales(sales_body([sale("A", 1), sale("A", 10)]))

    assert batch.duplicates_removed == 0
    assert len(batch.lines) == 2


def test_duplicate_catalogue_skus_are_kept_once_and_counted() -> None:
    body = catalogue_body([article("1"), article("2"), article("1", stock=Decimal(9))])

    catalogue = _catalogue(body)
    assert [item.sku for item in catalogue.items] == ["1", "2"]
    assert catalogue.items[0].stock == Decimal(148)
    assert catalogue.duplicates_removed == 1


@pytest.mark.parametrize(
    ("value", "expected"), [("S", True), ("", False), (True, False), (False, False), ("N", False)]
)
def test_promotion_flag_accepts_klk_spellings(value: object, expected: bool) -> None:
    line = _sales(sales_body([sale(tiene_promocion=value)])).lines[0]

    assert line.has_promotion is (expected or value is True)


def test_empty_and_na_texts_become_null_and_padding_is_dropped() -> None:
    item = with_part(sale(), "producto", codigo_producto="000001  ", marca_producto="N/A")
    item = with_part(item, "producto", modelo_producto="", serial=None)

    line = _sales(sales_body([item])).lines[0]
    assert line.sku == "000001"
    assert (line.brand, line.model, line.serial) == (None, None, None)


def test_optional_keys_may_be_absent() -> None:
    item = without(without(sale(), "codigo_promocion"), "imei", part="producto")
    item = without(item, "costo_total_usd", part="financiero")

    line = _sales(sales_body([item])).lines[0]
    assert (line.promotion_code, line.imei, line.total_cost_usd) == (None, None, None)


def test_nul_in_a_field_nobody_reads_is_harmless() -> None:
    batch = _sales(sales_body([sale(fecha_hora_completa="2025-11-17T12:19:56\x00")]))

    assert len(batch.lines) == 1


def test_utf8_byte_order_mark_is_accepted() -> None:
    body = (SAMPLES / "articulos_almacen_APP-TPF.json").read_bytes()

    assert len(_catalogue(b"\xef\xbb\xbf" + body).items) == 6


@pytest.mark.parametrize("generated", [12345, None, "", "yesterday", ["2025-11-17"], {"a": 1}])
def test_an_unreadable_generation_time_is_dropped_not_fatal(generated: object) -> None:
    """``fecha_generacion`` is informative: the rows are what matter."""
    catalogue = encode(
        {"meta": {"total_articulos": 1, "fecha_generacion": generated}, "articulos": [article()]}
    )
    sales = encode(
        {"meta": {"total_registros": 1, "fecha_generacion": generated}, "ventas": [sale()]}
    )

    decoded = _catalogue(catalogue)
    batch = _sales(sales)

    assert (len(decoded.items), decoded.generated_at) == (1, None)
    assert (len(batch.lines), batch.generated_at) == (1, None)


def test_catalogue_without_filtered_warehouses_is_fine() -> None:
    assert len(_catalogue(catalogue_body([article()], warehouses=None)).items) == 1


@pytest.mark.parametrize("listed", ['["TAVBOL"]', '["TAVBOL", "APP-DEP"]', "TAVBOL"])
def test_a_catalogue_listing_only_other_warehouses_is_another_warehouses(listed: str) -> None:
    """Loaded, it would replace APP-TPF's stock with another warehouse's."""
    with pytest.raises(KlkBadPayloadError, match=r"lists .*not APP-TPF.*almacences_filtrados"):
        _catalogue(catalogue_body([article()], warehouses=listed))

    assert len(_catalogue(catalogue_body([article()], warehouses='["APP-TPF", "X"]')).items) == 1
    by_branch = decode_catalogue(
        catalogue_body([article()], warehouses=listed), warehouse_code="SUC001",
        call="articulos/reposicion", one_warehouse=False,
    )  # fmt: skip
    assert len(by_branch.items) == 1


# --- refusals ------------------------------------------------------------------------------------


def _bad_sale_cases() -> list[tuple[str, dict[str, Any], str]]:
    good = sale()
    return [
        ("linea as text", sale(linea="1"), "$.ventas[1].linea"),
        ("no numero_factura", without(good, "numero_factura"), "numero_factura"),
        ("blank numero_factura", sale(numero_factura=" "), "$.ventas[1].numero_factura"),
        ("empty producto", sale(producto=[]), "$.ventas[1].producto"),
        ("empty cantidad", sale(cantidad=[]), "$.ventas[1].cantidad"),
        ("empty financiero", sale(financiero=[]), "$.ventas[1].financiero"),
        ("producto not a list", sale(producto={}), "$.ventas[1].producto"),
        ("month 13", sale(fecha="2025-13-01"), "$.ventas[1].fecha"),
        ("date with time", sale(fecha="2025-11-17T00:00:00"), "$.ventas[1].fecha"),
        ("year 1900", sale(fecha="1900-01-01"), "$.ventas[1].fecha"),
        ("hour 25", sale(hora="25:00:00"), "$.ventas[1].hora"),
        ("no seconds", sale(hora="12:00"), "$.ventas[1].hora"),
        ("garbage time", sale(hora="noon"), "$.ventas[1].hora"),
        ("NaN total", with_part(good, "financiero", venta_total_bs="NaN"), "venta_total_bs"),
        ("infinite", with_part(good, "financiero", venta_total_usd="-Infinity"), "venta_total_usd"),
        ("absurd", with_part(good, "cantidad", cantidad_vendida=Decimal("1E+400")), "cantidad_v"),
        ("tiny", with_part(good, "cantidad", peso_bruto=Decimal("1E-40")), "peso_bruto"),
        ("total missing", without(good, "venta_total_usd", part="financiero"), "venta_total_usd"),
        ("bool as number", with_part(good, "financiero", impuesto_monto=True), "impuesto_monto"),
        ("odd flag", sale(tiene_promocion="X"), "$.ventas[1].tiene_promocion"),
        ("fiscal flag missing", without(good, "es_no_fiscal"), "es_no_fiscal"),
        ("negative line", sale(linea=-1), "$.ventas[1].linea"),
        ("other warehouse", with_part(good, "cantidad", codigo_almacen="TAVBOL"), "codigo_almacen"),
        ("sku N/A", with_part(good, "producto", codigo_producto="N/A"), "codigo_producto"),
        (
            "NUL in text",
            with_part(good, "producto", descripcion_producto="HARINA\x00"),
            "$.ventas[1].producto[0].descripcion_producto",
        ),
    ]


@pytest.mark.parametrize(
    ("bad_item", "where"),
    [pytest.param(item, where, id=name) for name, item, where in _bad_sale_cases()],
)
def test_one_undecodable_sales_row_fails_the_whole_payload(
    bad_item: dict[str, Any], where: str
) -> None:
    body = sales_body([sale("A", 1), bad_item, sale("B", 1)])

    with pytest.raises(KlkBadPayloadError) as caught:
        _sales(body)
    assert where in str(caught.value)
    assert caught.value.raw == body
    assert caught.value.category.value == "bad_payload"


@pytest.mark.parametrize(
    ("bad_item", "where"),
    [
        (article(Codigo=1), "$.articulos[1].Codigo"),
        (article(Codigo="N/A"), "$.articulos[1].Codigo"),
        (article(stock=None), "$.articulos[1].stock"),
        (article(stock="Infinity"), "$.articulos[1].stock"),
        (article(Precio="abc"), "$.articulos[1].Precio"),
        (article(NombreProducto="A\x00B"), "$.articulos[1].NombreProducto"),
        ({"Codigo": "9"}, "$.articulos[1]"),
        ([1, 2], "$.articulos[1]"),
    ],
)
def test_one_undecodable_article_fails_the_whole_catalogue(bad_item: Any, where: str) -> None:
    body = catalogue_body([article("1"), bad_item, article("3")])

    with pytest.raises(KlkBadPayloadError) as caught:
        _catalogue(body)
    assert where in str(caught.value)
    assert caught.value.raw == body


_WHOLE_BODY_CASES = {
    "not json": b"<html>Bad gateway</html>",
    "empty": b"",
    "truncated": (SAMPLES / "ventas_SUC001.json").read_bytes()[:-40],
    "array": b"[]",
    "string": b'"ok"',
    "null": b"null",
    "no meta": encode({"ventas": []}),
    "no rows key": encode({"meta": {"total_registros": 0, "total_articulos": 0}}),
    "rows not a list": encode({"meta": {"total_registros": 0, "total_articulos": 0}, "ventas": {}}),
    "meta count as text": encode({"meta": {"total_registros": "0"}, "ventas": []}),
    "deeply nested": b'{"meta": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "invalid utf-8": b'{"meta": "\xff"}',
}


@pytest.mark.parametrize("body", _WHOLE_BODY_CASES.values(), ids=_WHOLE_BODY_CASES.keys())
@pytest.mark.parametrize("decoder", [_sales, _catalogue], ids=["sales", "catalogue"])
def test_malformed_bodies_are_bad_payloads(decoder: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(KlkBadPayloadError) as caught:
        decoder(body)
    assert caught.value.raw == body


@pytest.mark.parametrize(
    "error", ["timeout", {"code": 7, "message": "db down"}, None, ""], ids=repr
)
def test_any_body_with_an_error_key_is_an_error_body(error: object) -> None:
    body = encode({"error": error, "meta": {"total_registros": 0}, "ventas": []})

    with pytest.raises(KlkErrorBodyError) as caught:
        _sales(body)
    assert caught.value.raw == body
    if isinstance(error, dict):
        assert "db down" in str(caught.value)


def test_catalogue_count_mismatch_compares_raw_items() -> None:
    body = catalogue_body([article("1"), article("1")], total=1)

    with pytest.raises(KlkCountMismatchError) as caught:
        _catalogue(body)
    assert (caught.value.declared, caught.value.returned) == (1, 2)


def test_empty_sales_response_is_valid_when_meta_agrees() -> None:
    batch = _sales(sales_body([]))

    assert batch.lines == ()
    assert batch.declared_count == 0


# --- warehouses and filtered warehouses ----------------------------------------------------------


def test_warehouse_list_decodes() -> None:
    body = encode([warehouse("APP-TPF", "SUC001"), warehouse("TAVBOL", "SUC007")])

    rows = decode_warehouses(body, "almacenes/pisoventa")
    assert [(w.branch_code, w.warehouse_code) for w in rows] == [
        ("SUC001", "APP-TPF"),
        ("SUC007", "TAVBOL"),
    ]
    assert rows[0].warehouse_name == "PISO DE VENTA PERIFERICO"
    assert rows[0].branch_name == "PERIFERICO"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"error": "sin conexion"}', KlkErrorBodyError),
        (b'{"almacenes": []}', KlkBadPayloadError),
        (encode([{"CodigoSucursal": "SUC001"}]), KlkBadPayloadError),
        (b"[", KlkBadPayloadError),
    ],
)
def test_warehouse_list_failures(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_warehouses(body, "almacenes/pisoventa")


@pytest.mark.parametrize(
    ("filtered", "expected"),
    [
        ('["PSUC001"]', ("PSUC001",)),
        ('["A", "B"]', ("A", "B")),
        ("PSUC001", ("PSUC001",)),
        (["PSUC001"], ("PSUC001",)),
        (None, ()),
    ],
)
def test_filtered_warehouses_tolerate_their_forms(filtered: Any, expected: tuple[str]) -> None:
    body = catalogue_body([article()], warehouses=filtered)

    assert catalogue_warehouses(body) == expected
