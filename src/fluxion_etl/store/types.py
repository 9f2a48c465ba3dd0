"""Column types that keep values exact on both dialects.

SQLite has no decimal or time-zone types: ``Money`` stores canonical decimal text there (NUMERIC on
PostgreSQL) and ``UtcDateTime`` stores fixed-width UTC ISO text (``timestamptz`` on PostgreSQL), so
that comparisons and ``IS DISTINCT FROM`` behave the same on both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def decimal_text(value: Decimal) -> str:
    """Canonical decimal text: no exponent, no trailing zeros (``886.50`` → ``886.5``)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def utc_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: fluxion-etl stores only aware times")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_utc_text(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC without precision or scale on PostgreSQL (every digit KLK sends
    is kept, as on SQLite), canonical text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return decimal_text(Decimal(value))
        return Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).normalize() if dialect.name == "sqlite" else Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC instant: timestamptz on PostgreSQL, fixed-width UTC text on SQLite."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return utc_text(value)
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: fluxion-etl stores only aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_utc_text(value)
        instant: datetime = value
        return instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
