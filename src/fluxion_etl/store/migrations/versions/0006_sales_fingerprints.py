"""Sales line fingerprints: what each stored sales line was last written from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: instant on PostgreSQL however many lines are stored (no rewrite of a
    # table of tens of millions of rows). Lines without one are decoded when sent again, and get
    # one when their values next change.
    with op.batch_alter_table("sales_lines") as batch:
        batch.add_column(sa.Column("fingerprint", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sales_lines") as batch:
        batch.drop_column("fingerprint")
