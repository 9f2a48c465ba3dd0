"""Alerts: alert conditions, the messages sent for them, and named service locks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fluxion_etl.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_DATETIME = fluxion_etl.store.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("job", sa.String(length=16), nullable=True),
        sa.Column("location_id", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("open_key", sa.String(length=400), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("opened_at", UTC_DATETIME(), nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME(), nullable=False),
        sa.Column("cleared_at", UTC_DATETIME(), nullable=True),
        sa.Column("notified_at", UTC_DATETIME(), nullable=True),
        sa.Column("recovery_notified_at", UTC_DATETIME(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"], unique=False)
    op.create_table(
        "alert_messages",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("sent_at", UTC_DATETIME(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("alert_ids", sa.JSON(), nullable=True),
        sa.Column("deliveries", sa.JSON(), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_messages")),
    )
    op.create_index("ix_alert_messages_sent_at", "alert_messages", ["sent_at"], unique=False)
    op.create_table(
        "service_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", UTC_DATETIME(), nullable=False),
        sa.Column("expires_at", UTC_DATETIME(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_locks")),
    )


def downgrade() -> None:
    op.drop_table("service_locks")
    op.drop_index("ix_alert_messages_sent_at", table_name="alert_messages")
    op.drop_table("alert_messages")
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
    op.drop_table("alerts")
