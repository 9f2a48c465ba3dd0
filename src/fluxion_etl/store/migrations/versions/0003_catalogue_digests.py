"""Catalogue digests: what each warehouse's stored inventory was last loaded from.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fluxion_etl.store.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_DATETIME = fluxion_etl.store.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "catalogue_digests",
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("warehouse_code", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=32), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("loaded_at", UTC_DATETIME(), nullable=False),
        sa.PrimaryKeyConstraint("location_id", "warehouse_code", name=op.f("pk_catalogue_digests")),
    )


def downgrade() -> None:
    op.drop_table("catalogue_digests")
