"""Exact numbers on PostgreSQL: money, quantity and rate columns lose their NUMERIC(28, 8) limit.

KLK's numbers are kept as sent (SPEC §4.7): a rate or a float left over with more than 8 decimal
places was rounded on PostgreSQL and kept whole on SQLite. Unconstrained NUMERIC keeps every digit,
on both dialects alike.

Dropping a numeric's precision and scale needs no table rewrite (PostgreSQL checks that the stored
values fit as they are): instant however many sales lines are stored. SQLite stores these columns
as text already; nothing changes there. Values rounded before this revision stay as stored until
KLK sends them again with other values (a stock that moves, a sales window loaded again): the
merges compare values, and a rounded value differs from the whole one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of type Money when this revision was written.
NUMBERS = {
    "inventory_current": ("stock", "price_usd", "tax_rate"),
    "inventory_history": ("old_stock", "new_stock", "price_usd"),
    "products": ("tax_rate",),
    "sales_lines": (
        "quantity", "unit_weight", "gross_weight", "unit_volume", "unit_factor",
        "quantity_in_units", "computed_weight", "unit_cost_bs", "unit_cost_usd", "unit_price_bs",
        "unit_price_usd", "tax_rate", "tax_amount_bs", "discount_rate", "discount_amount_bs",
        "total_bs", "total_usd", "total_cost_bs", "total_cost_usd", "gross_profit_bs",
        "gross_profit_usd", "invoice_total_bs", "exchange_rate",
    ),
}  # fmt: skip


def _retype(numeric: sa.Numeric[Decimal]) -> None:
    dialect = op.get_bind().dialect
    if dialect.name != "postgresql":
        return
    ddl = numeric.compile(dialect=dialect)
    for table, columns in NUMBERS.items():
        # One ALTER TABLE per table: one lock, one pass of PostgreSQL's checks.
        clauses = ", ".join(f"ALTER COLUMN {column} TYPE {ddl}" for column in columns)
        op.execute(f"ALTER TABLE {table} {clauses}")


def upgrade() -> None:
    _retype(sa.Numeric())


def downgrade() -> None:
    # Rounds to 8 decimal places again: what the schema before this revision kept.
    _retype(sa.Numeric(28, 8))
