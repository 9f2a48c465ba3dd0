"""The audit trail: who changed what, and when (token name for the API, ``cli:<user>`` for the CLI).

Runs record who started them in ``runs.requested_by``; everything else an operator changes (a
cancel, a token created or revoked, a schedule switched off) is one row here, written in the same
transaction as the change itself so the trail cannot miss a change or record one that rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from fluxion_etl.store.schema import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    now: datetime,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry; ``action`` is a dotted verb such as ``run.cancel`` or ``token.create``."""
    conn.execute(
        insert(audit_log).values(
            at=now,
            actor=actor[:100],
            action=action[:100],
            target=None if target is None else target[:200],
            detail=_jsonable(detail),
        )
    )


def entries(
    conn: Connection, *, actor: str | None = None, action: str | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Newest first."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(audit_log.c.actor == actor)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    return [AuditEntry(**row) for row in conn.execute(query).mappings()]


def _jsonable(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if not detail else dict(json.loads(json.dumps(dict(detail), default=str)))
