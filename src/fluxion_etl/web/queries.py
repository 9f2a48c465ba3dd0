"""Reads the pages need that the store's functions do not offer (a date range, counts per status).

Read-only, over the tables of ``store/schema.py``; every write goes through the store's functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from fluxion_etl.domain.states import ItemStatus, RunStatus
from fluxion_etl.store.ledger import RunRow
from fluxion_etl.store.schema import api_tokens, run_items, runs
from fluxion_etl.store.tokens import Scope, TokenInfo


@dataclass(frozen=True, slots=True)
class StoredToken:
    info: TokenInfo
    token_hash: str


def token_by_id(conn: Connection, token_id: int) -> StoredToken | None:
    """The token row a session points at (revoked ones included: the caller checks)."""
    row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).mappings().first()
    if row is None:
        return None
    info = TokenInfo(
        id=int(row["id"]),
        name=str(row["name"]),
        scope=Scope(row["scope"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )
    return StoredToken(info, str(row["token_hash"]))


@dataclass(frozen=True, slots=True)
class RunFilter:
    """The runs page's filters; a ``None`` field does not filter."""

    job: str | None = None
    status: str | None = None
    location_id: str | None = None
    trigger: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


def find_runs(conn: Connection, where: RunFilter, *, limit: int, offset: int) -> list[RunRow]:
    """Newest first; ``location_id`` matches runs with an item for that location."""
    query = select(runs).order_by(runs.c.id.desc()).limit(limit).offset(offset)
    for column, value in (
        (runs.c.job, where.job),
        (runs.c.status, where.status),
        (runs.c.trigger, where.trigger),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(runs.c.created_at >= where.since)
    if where.until is not None:
        query = query.where(runs.c.created_at < where.until)
    if where.location_id is not None:
        with_item = select(run_items.c.run_id).where(run_items.c.location_id == where.location_id)
        query = query.where(runs.c.id.in_(with_item))
    return [RunRow.from_row(row) for row in conn.execute(query).mappings()]


def item_statuses(conn: Connection, run_ids: Iterable[int]) -> dict[int, Counter[ItemStatus]]:
    """Per run: how many of its locations are in each item status (one query for a page)."""
    ids = list(run_ids)
    out: dict[int, Counter[ItemStatus]] = {run_id: Counter() for run_id in ids}
    if not ids:
        return out
    query = (
        select(run_items.c.run_id, run_items.c.status, func.count())
        .where(run_items.c.run_id.in_(ids))
        .group_by(run_items.c.run_id, run_items.c.status)
    )
    for run_id, status, count in conn.execute(query):
        out[int(run_id)][ItemStatus(status)] = int(count)
    return out


def run_counts_since(conn: Connection, since: datetime) -> Counter[RunStatus]:
    """Runs created at or after ``since``, counted by status."""
    query = (
        select(runs.c.status, func.count())
        .where(runs.c.created_at >= since)
        .group_by(runs.c.status)
    )
    return Counter({RunStatus(status): int(count) for status, count in conn.execute(query)})


def unfinished_runs(conn: Connection, limit: int = 20) -> list[RunRow]:
    """Runs queued or running, oldest first (the ones an operator watches)."""
    query = (
        select(runs)
        .where(runs.c.status.in_((RunStatus.QUEUED.value, RunStatus.RUNNING.value)))
        .order_by(runs.c.id)
        .limit(limit)
    )
    return [RunRow.from_row(row) for row in conn.execute(query).mappings()]
