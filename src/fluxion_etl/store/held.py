"""Mass deletions held back instead of applied (SPEC §4.9), for reports and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from fluxion_etl.store.schema import held_deletions


@dataclass(frozen=True, slots=True)
class HeldDeletion:
    id: int
    run_id: int
    location_id: str
    job: str
    subject: str
    would_delete: int
    total: int
    detected_at: datetime
    resolved_at: datetime | None


def record_held_deletion(
    conn: Connection,
    *,
    run_id: int,
    location_id: str,
    job: str,
    subject: str,
    would_delete: int,
    total: int,
    now: datetime,
) -> None:
    conn.execute(
        insert(held_deletions).values(
            run_id=run_id,
            location_id=location_id,
            job=job,
            subject=subject,
            would_delete=would_delete,
            total=total,
            detected_at=now,
        )
    )


def resolve_held_deletions(
    conn: Connection, *, location_id: str, subject: str, now: datetime
) -> int:
    """A later run applied (or no longer needs) the deletion: close what was held for it."""
    result = conn.execute(
        update(held_deletions)
        .where(
            held_deletions.c.location_id == location_id,
            held_deletions.c.subject == subject,
            held_deletions.c.resolved_at.is_(None),
        )
        .values(resolved_at=now)
    )
    return result.rowcount


def open_held_deletions(conn: Connection) -> list[HeldDeletion]:
    rows = conn.execute(
        select(held_deletions)
        .where(held_deletions.c.resolved_at.is_(None))
        .order_by(held_deletions.c.detected_at)
    )
    return [HeldDeletion(**row._mapping) for row in rows]
