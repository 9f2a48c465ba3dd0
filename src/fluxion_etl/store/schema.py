"""Every table, declared once (SQLAlchemy Core). Alembic migrations are written from this file.

Naming: our own English names; KLK's field names appear only in ``fluxion_etl.klk.decode``.
All instants are ``UtcDateTime``; all money, quantities and rates are ``Money`` (exact).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from fluxion_etl.store.types import Money, UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

Id = BigInteger().with_variant(Integer, "sqlite")

locations = Table(
    "locations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("branch_code", String(32)),
    Column("timezone", String(64), nullable=False),
    Column("region", String(100)),
    Column("active", Boolean, nullable=False, default=True),
    Column("warehouses", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("barcode", String(64)),
    Column("name", String(300)),
    Column("category_code", String(32)),
    Column("subcategory_code", String(32)),
    Column("category_name", String(200)),
    Column("subcategory_name", String(200)),
    Column("brand", String(200)),
    Column("tax_rate", Money),
    Column("updated_at", UtcDateTime, nullable=False),
)

inventory_current = Table(
    "inventory_current",
    metadata,
    Column("location_id", String(64), primary_key=True),
    Column("warehouse_code", String(32), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("stock", Money, nullable=False),
    Column("price_usd", Money, nullable=False),
    Column("tax_rate", Money),
    Column("updated_at", UtcDateTime, nullable=False),  # when stock, price or tax last changed
    Column("run_id", Id),  # the run that last changed them
    # Of the article the row was last loaded from, exactly as KLK sent it
    # (``klk.decode.article_fingerprints``): an article sent again unchanged is not decoded.
    Column("fingerprint", BigInteger),
)

# A row only when a quantity changes or an article appears or disappears (SPEC §4.10).
inventory_history = Table(
    "inventory_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("location_id", String(64), nullable=False),
    Column("warehouse_code", String(32), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("change", String(16), nullable=False),  # appeared | changed | disappeared
    Column("old_stock", Money),
    Column("new_stock", Money),
    Column("price_usd", Money),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("run_id", Id),
    Index("ix_inventory_history_item", "location_id", "warehouse_code", "sku", "changed_at"),
    Index("ix_inventory_history_changed_at", "changed_at"),
)

# The digest of the article list each warehouse's stored inventory was last loaded from, written
# in that load's transaction; any other load of the warehouse deletes it. A catalogue whose
# articles hash the same is already stored as it is, and is not decoded again (see
# store/catalogue_digests.py for when a digest counts).
catalogue_digests = Table(
    "catalogue_digests",
    metadata,
    Column("location_id", String(64), primary_key=True),
    Column("warehouse_code", String(32), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("code_version", String(32), nullable=False),  # of the code that loaded it
    Column("articles", Integer, nullable=False),  # distinct articles stored from it
    Column("fetched", Integer, nullable=False),  # rows in the payload, repeated skus included
    Column("run_id", Id, nullable=False),
    Column("loaded_at", UtcDateTime, nullable=False),
)

sales_lines = Table(
    "sales_lines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("location_id", String(64), nullable=False),
    Column("invoice_number", String(64), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("sold_at", UtcDateTime, nullable=False),
    Column("business_day", Date, nullable=False),
    Column("sku", String(64), nullable=False),
    Column("product_description", String(300)),
    Column("brand", String(200)),
    Column("model", String(200)),
    Column("category_code", String(32)),
    Column("group_name", String(200)),
    Column("subgroup_code", String(32)),
    Column("category_name", String(200)),
    Column("barcode", String(64)),
    Column("serial", String(100)),
    Column("imei", String(100)),
    Column("warehouse_code", String(32), nullable=False),
    Column("warehouse_name", String(200)),
    Column("quantity", Money, nullable=False),
    Column("unit_weight", Money),
    Column("gross_weight", Money),
    Column("unit_volume", Money),
    Column("sales_unit", String(16)),
    Column("unit_factor", Money),
    Column("quantity_in_units", Money),
    Column("computed_weight", Money),
    Column("unit_cost_bs", Money),
    Column("unit_cost_usd", Money),
    Column("unit_price_bs", Money),
    Column("unit_price_usd", Money),
    Column("tax_rate", Money),
    Column("tax_amount_bs", Money),
    Column("discount_rate", Money),
    Column("discount_amount_bs", Money),
    Column("total_bs", Money, nullable=False),
    Column("total_usd", Money, nullable=False),
    Column("total_cost_bs", Money),
    Column("total_cost_usd", Money),
    Column("gross_profit_bs", Money),
    Column("gross_profit_usd", Money),
    Column("invoice_total_bs", Money),
    Column("exchange_rate", Money),
    Column("is_non_fiscal", Boolean, nullable=False),
    Column("has_promotion", Boolean, nullable=False),
    Column("promotion_code", String(64)),
    # What the line was loaded from (``klk.decode``: its bytes, hashed): a line sent again byte
    # for byte by a scheduled window is not decoded. Written with the values, never alone.
    Column("fingerprint", BigInteger),
    Column("loaded_at", UtcDateTime, nullable=False),
    Column("run_id", Id),
    UniqueConstraint("location_id", "invoice_number", "line_number", name="uq_sales_lines_key"),
    Index("ix_sales_lines_location_sold_at", "location_id", "sold_at"),
    Index("ix_sales_lines_location_day", "location_id", "business_day"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("requested_by", String(100)),
    Column("scope", JSON),  # list of location ids, or null for every active location
    Column("date_from", Date),  # local dates, inclusive (backfills and reconciles)
    Column("date_to", Date),
    Column("params", JSON, nullable=False, default=dict),
    Column("idempotency_key", String(200), unique=True),
    Column("schedule_name", String(64)),
    Column("scheduled_for", UtcDateTime),
    Column("launcher", String(16)),
    Column("external_ref", String(300)),  # e.g. the ECS task ARN
    Column("owner", String(200)),  # the process that executes it (host:pid:nonce)
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime),
    Column("deadline_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("error_category", String(32)),
    Column("error_message", Text),
    Index("ix_runs_status", "status"),
    Index("ix_runs_job_created", "job", "created_at"),
)

run_items = Table(
    "run_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("location_id", String(64), nullable=False),
    Column("status", String(24), nullable=False),
    Column("fetched", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("deleted", Integer, nullable=False, default=0),
    Column("held", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("extract_ms", Integer, nullable=False, default=0),
    Column("transform_ms", Integer, nullable=False, default=0),
    Column("load_ms", Integer, nullable=False, default=0),
    Column("windows", JSON),  # the KLK windows read, for audit
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("error_category", String(32)),
    Column("error_phase", String(16)),
    Column("error_message", Text),
    UniqueConstraint("run_id", "location_id", name="uq_run_items_run_location"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("level", String(10), nullable=False),
    Column("location_id", String(64)),
    Column("event", Text, nullable=False),
    Column("fields", JSON),
    Index("ix_run_logs_run", "run_id", "id"),
)

raw_payloads = Table(
    "raw_payloads",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("location_id", String(64), nullable=False),
    Column("call", String(200), nullable=False),
    Column("category", String(32), nullable=False),
    Column("captured_at", UtcDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("body", LargeBinary),
    Index("ix_raw_payloads_captured_at", "captured_at"),
)

# Synced time ranges of sales per location; provisional = an open stretch that returned no lines.
sales_coverage = Table(
    "sales_coverage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("location_id", String(64), nullable=False),
    Column("covered_from", UtcDateTime, nullable=False),
    Column("covered_to", UtcDateTime, nullable=False),
    Column("provisional", Boolean, nullable=False),
    Column("run_id", Id),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_sales_coverage_location_from", "location_id", "covered_from"),
)

# Per (job, location): cursor, last success and circuit breaker; updated in the load transaction.
sync_state = Table(
    "sync_state",
    metadata,
    Column("job", String(16), primary_key=True),
    Column("location_id", String(64), primary_key=True),
    Column("watermark", UtcDateTime),
    Column("last_success_at", UtcDateTime),
    Column("last_success_run_id", Id),
    Column("last_attempt_at", UtcDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("circuit_open_until", UtcDateTime),
    Column("last_error_category", String(32)),
    Column("last_error_message", Text),
)

leases = Table(
    "leases",
    metadata,
    Column("job", String(16), primary_key=True),
    Column("location_id", String(64), primary_key=True),
    Column("run_id", Id, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

held_deletions = Table(
    "held_deletions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, nullable=False),
    Column("location_id", String(64), nullable=False),
    Column("job", String(16), nullable=False),
    Column("subject", String(64), nullable=False),  # e.g. "sales 2026-01-05" or "catalogue TAVBOL"
    Column("would_delete", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(200)),
    Column("detail", JSON),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("job", String(16), nullable=False),
    Column("cron", String(120), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("locations", JSON),
    Column("active_hours", JSON),
    Column("retry_attempts", Integer, nullable=False),
    Column("max_event_age_seconds", Integer, nullable=False),
    Column("catch_up", String(16), nullable=False),
    Column("seed_hash", String(64)),  # hash of the config-file definition it was seeded from
    Column("updated_by", String(100)),
    Column("updated_at", UtcDateTime, nullable=False),
)

fires = Table(
    "fires",
    metadata,
    Column("schedule_name", String(64), primary_key=True),
    Column("scheduled_for", UtcDateTime, primary_key=True),
    Column("outcome", String(32), nullable=False),
    Column("run_id", Id),
    Column("source", String(16), nullable=False),  # embedded | external | manual
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("detail", Text),
    Index("ix_fires_recorded_at", "recorded_at"),
)

# Alert conditions (ops.alerts): one row per occurrence of a condition, from opening to clearing.
# ``open_key`` is the dedupe key while the alert is open and NULL once cleared, so the unique
# constraint allows one open alert per (kind, job, location, subject) and any number of old ones.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("job", String(16)),
    Column("location_id", String(64)),
    Column("subject", String(200)),  # e.g. the schedule of a missed fire, the held day
    Column("open_key", String(400), unique=True),
    Column("summary", Text, nullable=False),
    Column("detail", JSON),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime),
    Column("notified_at", UtcDateTime),
    Column("recovery_notified_at", UtcDateTime),
    Index("ix_alerts_opened_at", "opened_at"),
)

# Every message the alerter sent (or tried to): the rate limit counts these, the digest finds its
# last one here, and operators can see what went out and what each channel answered.
alert_messages = Table(
    "alert_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),  # alert | recovery | summary | digest
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("alert_ids", JSON),
    Column("deliveries", JSON),  # channel name -> "ok" or the error
    Column("delivered", Boolean, nullable=False),
    Index("ix_alert_messages_sent_at", "sent_at"),
)

# Named leases for work that exactly one of several service processes must do (alert evaluation).
service_locks = Table(
    "service_locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)
