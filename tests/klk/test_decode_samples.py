"""The hand-written KLK samples decode to exactly the values their README states."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from tests.conftest import SAMPLES

from fluxion_etl.domain.records import SalesLine
from fluxion_etl.errors import KlkCountMismatchError, KlkErrorBodyError
from fluxion_etl.klk.decode import decode_catalogue, decode_sales

CARACAS = ZoneInfo("America/Caracas")


def _sales_sample() -> dict[tuple[str, int], SalesLine]:
    body = (SAMPLES / "ventas_SUC001.json").read_bytes()
    batch = decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS)
    assert batch.declared_count == 4
    assert batch.duplicates_removed == 1
    return {line.key: line for line in batch.lines}


def _exact(value: Decimal | None, literal: str) -> None:
    """Equal *and* spelled the same: no float detour, no rounding."""
    assert value is not None
    assert value == Decimal(literal)
    assert str(value) == literal


def test_catalogue_sample_turns_na_into_null_and_keeps_stock_exact() -> None:
    body = (SAMPLES / "articulos_almacen_APP-TPF.json").read_bytes()
    catalogue = decode_catalogue(body, warehouse_code="APP-TPF")

    assert catalogue.warehouse_code == "APP-TPF"
    assert catalogue.duplicates_removed == 0
    assert [item.sku for item in catalogue.items] == [
        "000001", "000245", "001853", "004410", "010020", "020007"
    ]  # fmt: skip
    for item, stock in zip(
        catalogue.items, ["148", "-3.415", "12.75", "0", "1000", "0.2"], strict=True
    ):
        _exact(item.stock, stock)
    cheese = catalogue.items[1]
    assert (cheese.barcode, cheese.subcategory_code, cheese.subcategory_name, cheese.brand) == (
        None, None, None, None,
    )  # fmt: skip
    assert cheese.name == "QUESO BLANCO DURO"
    _exact(cheese.price_usd, "7.9")
    _exact(cheese.tax_rate, "16")
    assert catalogue.items[2].brand is None
    assert catalogue.items[0].brand == "DOÑA ARE"
    assert catalogue.generated_at == datetime(2025, 11, 17, 16, 20, 5, 123000, tzinfo=UTC)


def test_sales_sample_stores_three_lines_with_utc_times() -> None:
    lines = _sales_sample()

    assert sorted(lines) == [("C10-01-00008064", 1), ("C10-01-00008064", 2), ("C10-02-00011873", 1)]
    noon = datetime(2025, 11, 17, 16, 19, 56, 896614, tzinfo=UTC)
    assert lines["C10-01-00008064", 1].sold_at == noon
    assert lines["C10-01-00008064", 2].sold_at == noon
    assert lines["C10-02-00011873", 1].sold_at == datetime(2025, 11, 18, 1, 47, 3, tzinfo=UTC)
    assert all(line.sold_at.utcoffset() is not None for line in lines.values())
    assert {line.business_day for line in lines.values()} == {date(2025, 11, 17)}


def test_sales_sample_line_values_match_the_readme() -> None:
    lines = _sales_sample()

    first = lines["C10-01-00008064", 1]
    _exact(first.quantity, "3")
    assert first.sales_unit == "UNIDAD"
    _exact(first.total_usd, "3.75")
    _exact(first.total_bs, "886.5")
    _exact(first.invoice_total_bs, "1158.67")
    _exact(first.exchange_rate, "236.4")
    assert (first.is_non_fiscal, first.has_promotion, first.promotion_code) == (False, False, None)
    assert (first.model, first.serial, first.imei) == (None, None, None)

    second = lines["C10-01-00008064", 2]
    _exact(second.quantity, "3")
    _exact(second.total_usd, "0.3")
    _exact(second.total_bs, "70.92")
    _exact(second.tax_rate, "16")
    _exact(second.tax_amount_bs, "11.35")


def test_sales_sample_weighed_promoted_non_fiscal_line() -> None:
    tomato = _sales_sample()["C10-02-00011873", 1]

    _exact(tomato.quantity, "1.235")
    assert tomato.sales_unit == "KG"
    _exact(tomato.discount_rate, "10")
    _exact(tomato.discount_amount_bs, "32.12")
    _exact(tomato.total_usd, "1.22")
    assert tomato.is_non_fiscal is True
    assert tomato.has_promotion is True
    assert tomato.promotion_code == "PROMO-FRUVER-10"
    assert tomato.brand is None
    assert tomato.sku == "001853"
    assert tomato.warehouse_code == "APP-TPF"
    assert tomato.warehouse_name == "PISO DE VENTA PERIFERICO"


def test_sales_sample_day_totals_are_exact_decimals() -> None:
    lines = list(_sales_sample().values())

    total_usd = sum((line.total_usd for line in lines), Decimal(0))
    total_bs = sum((line.total_bs for line in lines), Decimal(0))
    assert (str(total_usd), str(total_bs)) == ("5.27", "1246.45")
    assert len(lines) == 3
    assert len({line.invoice_number for line in lines}) == 2


def test_sales_sample_meta_is_kept_for_inspection() -> None:
    body = (SAMPLES / "ventas_SUC001.json").read_bytes()
    batch = decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS)

    assert batch.generated_at == datetime(2025, 11, 18, 0, 2, 11, 402000, tzinfo=UTC)
    assert batch.extra["almacen"] == "APP-TPF"
    assert batch.extra["sucursal_codigo"] == "SUC001"


def test_count_mismatch_sample_fails_before_duplicates_are_removed() -> None:
    body = (SAMPLES / "ventas_count_mismatch.json").read_bytes()

    with pytest.raises(KlkCountMismatchError) as caught:
        decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS)
    assert (caught.value.declared, caught.value.returned) == (5, 4)
    assert caught.value.raw == body
    assert caught.value.category.value == "count_mismatch"


def _decode_as_sales(body: bytes) -> object:
    return decode_sales(body, warehouse_code="APP-TPF", zone=CARACAS)


def _decode_as_catalogue(body: bytes) -> object:
    return decode_catalogue(body, warehouse_code="APP-TPF")


@pytest.mark.parametrize("decode", [_decode_as_sales, _decode_as_catalogue])
def test_error_body_sample_is_an_error_not_an_empty_result(
    decode: Callable[[bytes], object],
) -> None:
    body = (SAMPLES / "error_body.json").read_bytes()

    with pytest.raises(KlkErrorBodyError) as caught:
        decode(body)
    assert "No se pudo conectar con la base de datos de la sucursal" in str(caught.value)
    assert caught.value.raw == body
    assert caught.value.category.value == "error_body"
