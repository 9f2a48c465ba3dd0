"""Article fingerprints: what each stored inventory row was last loaded from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: instant on PostgreSQL however many rows are stored. Rows without one
    # are decoded at their next load, which writes it.
    with op.batch_alter_table("inventory_current") as batch:
        batch.add_column(sa.Column("fingerprint", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inventory_current") as batch:
        batch.drop_column("fingerprint")
