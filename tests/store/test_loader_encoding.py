"""The loaders' fast SQLite encoding writes exactly what the column types write."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from store_builders import sales_line, sales_lines

from fluxion_etl.domain.records import SalesLine
from fluxion_etl.store.bulk import columns_of, money_texts, sqlite_rows, utc_texts
from fluxion_etl.store.sales_rows import sqlite_row_encoder
from fluxion_etl.store.schema import sales_lines as sales_table
from fluxion_etl.store.types import decimal_text, utc_text

DECIMALS = [
    Decimal("886.50"),
    Decimal("886.5"),
    Decimal("1E+2"),
    Decimal("1.2E-7"),
    Decimal("-0.00"),
    Decimal("0"),
    Decimal("-12.3400"),
    Decimal("123456789012.12345678"),
    None,
]
INSTANTS = [
    datetime(2026, 1, 5, 11, 0, tzinfo=UTC),
    datetime(2026, 1, 5, 7, 0, 0, 1, tzinfo=timezone(timedelta(hours=-4))),
    None,
]


def bound(column_name: str, value: object) -> object:
    """What SQLAlchemy sends to SQLite for ``value`` through the column's own type."""
    dialect = sqlite.dialect()
    processor = sales_table.c[column_name].type.dialect_impl(dialect).bind_processor(dialect)
    return processor(value) if processor else value


def test_money_instants_and_days_encode_like_their_column_types() -> None:
    columns = [sales_table.c.quantity, sales_table.c.sold_at, sales_table.c.business_day]
    days = [date(2026, 1, 5), date(2025, 12, 31), date(2026, 1, 5)]
    count = len(DECIMALS)
    values = [DECIMALS, (INSTANTS * 3)[:count], (days * 3)[:count]]

    rows = sqlite_rows(columns, values, before=("tienda_01",), after=(7,))

    assert rows == [
        (
            "tienda_01",
            bound("quantity", money),
            bound("sold_at", instant),
            bound("business_day", day),
            7,
        )
        for money, instant, day in zip(*values, strict=True)
    ]
    assert rows[0][1] == rows[1][1] == "886.5"
    assert rows[4][1] == "0"


def test_the_spelled_out_sales_row_matches_the_generic_encoding() -> None:
    lines = [
        *sales_lines(50),
        sales_line(7, unit_weight=None, exchange_rate=Decimal("1E+2"), quantity=Decimal("-0.0")),
    ]
    names = [f.name for f in fields(SalesLine)]
    generic = sqlite_rows(
        [sales_table.c[n] for n in names],
        columns_of(lines, names),
        before=("tienda_01",),
        after=("2026-01-05 20:00:00.000000", 3),
    )

    spelled_out = list(map(sqlite_row_encoder("tienda_01", "2026-01-05 20:00:00.000000", 3), lines))

    assert spelled_out == generic


@given(st.decimals(allow_nan=True, allow_infinity=True) | st.sampled_from(DECIMALS[:-1]))
def test_a_memoised_decimal_text_is_the_canonical_text(value: Decimal) -> None:
    try:
        expected: object = decimal_text(value)
    except InvalidOperation:  # a signalling NaN: both refuse it
        expected = InvalidOperation
    try:
        got: object = money_texts()[str(value)]
    except InvalidOperation:
        got = InvalidOperation
    assert got == expected


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-4)), timezone(timedelta(0))]),
    )
)
def test_a_memoised_instant_text_is_the_utc_text(value: datetime) -> None:
    assert utc_texts()[value] == utc_text(value)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_texts()[datetime(2026, 1, 5, 11, 0)]
