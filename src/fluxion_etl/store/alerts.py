"""Alert rows and the messages sent for them (the state behind ``ops.alerts``).

An alert is one occurrence of a condition (a location failing, stale, ...) from the evaluation
that first saw it to the one that no longer did. While open it holds ``open_key`` (kind, job,
location, subject), unique in the table, so a condition has at most one open alert however many
processes or evaluations see it; clearing sets the key to NULL. ``notified_at`` and
``recovery_notified_at`` record what was announced, so nothing is announced twice and a recovery
is announced only for an alert that was.

Every function takes an open ``Connection`` (the caller owns the transaction) and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.schema import alert_messages, alerts


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    kind: str
    job: str | None
    location_id: str | None
    subject: str | None
    summary: str
    detail: dict[str, Any] | None
    opened_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None
    notified_at: datetime | None
    recovery_notified_at: datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> AlertRow:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    sent_at: datetime
    kind: str
    subject: str
    body: str
    alert_ids: list[int] | None
    deliveries: dict[str, str] | None
    delivered: bool


def list_alerts(
    conn: Connection,
    *,
    open_only: bool = False,
    location_id: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[AlertRow]:
    """Newest first; ``since`` keeps alerts still open or cleared at or after it."""
    query = select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit)
    if open_only:
        query = query.where(alerts.c.cleared_at.is_(None))
    if location_id is not None:
        query = query.where(alerts.c.location_id == location_id)
    if since is not None:
        query = query.where(alerts.c.cleared_at.is_(None) | (alerts.c.cleared_at >= since))
    return [AlertRow.from_row(row) for row in conn.execute(query).mappings()]


def open_alert(
    conn: Connection,
    *,
    key: str,
    kind: str,
    job: str | None,
    location_id: str | None,
    subject: str | None,
    summary: str,
    detail: Mapping[str, Any] | None,
    now: datetime,
) -> int | None:
    """Open an alert for ``key``; None when one is already open (another evaluation won)."""
    stmt = (
        insert_for(conn, alerts)
        .values(
            kind=kind,
            job=job,
            location_id=location_id,
            subject=subject,
            open_key=key,
            summary=summary[:4000],
            detail=dict(detail) if detail else None,
            opened_at=now,
            last_seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=[alerts.c.open_key])
        .returning(alerts.c.id)
    )
    alert_id = conn.execute(stmt).scalar_one_or_none()
    return None if alert_id is None else int(alert_id)


def open_keys(conn: Connection) -> dict[str, int]:
    """Open alerts by key."""
    query = select(alerts.c.open_key, alerts.c.id).where(alerts.c.open_key.is_not(None))
    return {str(row.open_key): int(row.id) for row in conn.execute(query)}


def still_seen(
    conn: Connection,
    alert_id: int,
    *,
    summary: str,
    detail: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """The condition holds at ``now``: keep its latest wording and detail."""
    conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.cleared_at.is_(None))
        .values(last_seen_at=now, summary=summary[:4000], detail=dict(detail) if detail else None)
    )


def clear_alert(conn: Connection, alert_id: int, *, now: datetime) -> bool:
    """The condition no longer holds: close the alert and free its key for a later occurrence."""
    result = conn.execute(
        update(alerts)
        .where(alerts.c.id == alert_id, alerts.c.cleared_at.is_(None))
        .values(cleared_at=now, open_key=None)
    )
    return result.rowcount == 1


def unannounced_openings(conn: Connection) -> list[AlertRow]:
    """Open alerts not yet announced (new, or held back by the rate limit), oldest first."""
    query = (
        select(alerts)
        .where(alerts.c.cleared_at.is_(None), alerts.c.notified_at.is_(None))
        .order_by(alerts.c.opened_at, alerts.c.id)
    )
    return [AlertRow.from_row(row) for row in conn.execute(query).mappings()]


def unannounced_recoveries(conn: Connection) -> list[AlertRow]:
    """Cleared alerts that were announced and whose recovery was not, oldest first."""
    query = (
        select(alerts)
        .where(
            alerts.c.cleared_at.is_not(None),
            alerts.c.notified_at.is_not(None),
            alerts.c.recovery_notified_at.is_(None),
        )
        .order_by(alerts.c.cleared_at, alerts.c.id)
    )
    return [AlertRow.from_row(row) for row in conn.execute(query).mappings()]


def mark_announced(
    conn: Connection, alert_ids: Iterable[int], *, now: datetime, recovery: bool
) -> None:
    column = "recovery_notified_at" if recovery else "notified_at"
    ids = list(alert_ids)
    if ids:
        conn.execute(update(alerts).where(alerts.c.id.in_(ids)).values({column: now}))


def record_message(
    conn: Connection,
    *,
    now: datetime,
    kind: str,
    subject: str,
    body: str,
    alert_ids: Iterable[int],
    deliveries: Mapping[str, str],
    delivered: bool,
) -> int:
    stmt = (
        insert(alert_messages)
        .values(
            sent_at=now,
            kind=kind,
            subject=subject[:300],
            body=body,
            alert_ids=list(alert_ids),
            deliveries=dict(deliveries),
            delivered=delivered,
        )
        .returning(alert_messages.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def messages_since(conn: Connection, since: datetime, *, kinds: Iterable[str] | None = None) -> int:
    """How many messages went out at or after ``since`` (the rate limit counts these)."""
    query = select(func.count()).select_from(alert_messages)
    query = query.where(alert_messages.c.sent_at >= since)
    if kinds is not None:
        query = query.where(alert_messages.c.kind.in_(list(kinds)))
    return int(conn.execute(query).scalar_one())


def last_message_at(conn: Connection, kind: str) -> datetime | None:
    query = select(func.max(alert_messages.c.sent_at)).where(alert_messages.c.kind == kind)
    value: datetime | None = conn.execute(query).scalar_one_or_none()
    return value


def list_messages(conn: Connection, *, limit: int = 100) -> list[MessageRow]:
    """Newest first."""
    query = select(alert_messages).order_by(alert_messages.c.id.desc()).limit(limit)
    return [
        MessageRow(**{f.name: row[f.name] for f in fields(MessageRow)})
        for row in conn.execute(query).mappings()
    ]


def purge(conn: Connection, *, older_than: datetime) -> int:
    """Retention: alerts cleared and messages sent before ``older_than``."""
    cleared = conn.execute(delete(alerts).where(alerts.c.cleared_at < older_than)).rowcount
    sent = conn.execute(delete(alert_messages).where(alert_messages.c.sent_at < older_than))
    return int(cleared) + int(sent.rowcount)
