"""A run's log lines and kept raw payloads: what an operator reads after the process is gone.

Both are bounded (lines per run, bytes per payload) and purged by retention, so a chatty or broken
run cannot fill the database. The caller owns the transaction and passes ``now`` from its Clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from fluxion_etl.domain.states import RunStatus
from fluxion_etl.store.schema import raw_payloads, run_logs, runs

UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class LogRow:
    id: int
    run_id: int
    at: datetime
    level: str
    location_id: str | None
    event: str
    fields: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PurgeResult:
    logs: int
    payloads: int


@dataclass(frozen=True, slots=True)
class LogLine:
    at: datetime
    level: str
    event: str
    location_id: str | None = None
    fields: Mapping[str, Any] | None = None


def append_log(
    conn: Connection,
    run_id: int,
    *,
    now: datetime,
    level: str,
    event: str,
    location_id: str | None = None,
    fields: Mapping[str, Any] | None = None,
    max_lines: int,
) -> bool:
    """Keep one log line, at most ``max_lines`` per run; returns False when it was dropped.

    The first line over the limit is replaced by one marker line saying lines were dropped, so a
    reader knows the log is incomplete (stdout still has every line).
    """
    line = LogLine(at=now, level=level, event=event, location_id=location_id, fields=fields)
    return append_logs(conn, run_id, [line], max_lines=max_lines) == 1


def append_logs(conn: Connection, run_id: int, lines: Sequence[LogLine], *, max_lines: int) -> int:
    """Keep several log lines in order in two statements, within the limit of ``append_log``;
    returns how many were kept (the marker line not counted)."""
    if not lines:
        return 0
    count = conn.execute(
        select(func.count()).select_from(run_logs).where(run_logs.c.run_id == run_id)
    ).scalar_one()
    room = max(max_lines - count, 0)
    rows = [_row(run_id, line) for line in lines[:room]]
    if len(lines) > room and count <= max_lines:
        marker = f"log limit of {max_lines} lines reached: later lines of this run are dropped"
        rows.append(_row(run_id, LogLine(at=lines[room].at, level="warning", event=marker)))
    if rows:
        conn.execute(insert(run_logs), rows)
    return min(room, len(lines))


def _row(run_id: int, line: LogLine) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "at": line.at,
        "level": line.level,
        "location_id": line.location_id,
        "event": line.event,
        "fields": _jsonable(line.fields),
    }


def _jsonable(fields: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Log fields as JSON values (datetimes, decimals, enums become their text)."""
    return None if not fields else dict(json.loads(json.dumps(dict(fields), default=str)))


def read_logs(
    conn: Connection, run_id: int, *, after_id: int = 0, limit: int = 1000
) -> list[LogRow]:
    """Lines in order; poll with ``after_id`` = the last id seen to follow a live run."""
    query = (
        select(run_logs)
        .where(run_logs.c.run_id == run_id, run_logs.c.id > after_id)
        .order_by(run_logs.c.id)
        .limit(limit)
    )
    return [LogRow(**row) for row in conn.execute(query).mappings()]


def save_raw_payload(
    conn: Connection,
    *,
    run_id: int,
    location_id: str,
    call: str,
    category: str,
    body: bytes | None,
    now: datetime,
    max_bytes: int,
) -> int:
    """Keep a failed call's body for inspection (SPEC §4.4), cut to ``max_bytes``; returns an id."""
    size = len(body or b"")
    stored = None if body is None else body[:max_bytes]
    return int(
        conn.execute(
            insert(raw_payloads)
            .values(
                run_id=run_id,
                location_id=location_id,
                call=call,
                category=str(category),
                captured_at=now,
                size=size,
                truncated=size > max_bytes,
                body=stored,
            )
            .returning(raw_payloads.c.id)
        ).scalar_one()
    )


@dataclass(frozen=True, slots=True)
class PayloadRow:
    """A failed call's kept answer (``save_raw_payload``)."""

    id: int
    location_id: str
    call: str
    category: str
    captured_at: datetime
    size: int  # of the whole answer; ``body`` holds at most the first ``max_bytes``
    truncated: bool
    body: bytes | None


def read_raw_payloads(conn: Connection, run_id: int) -> list[PayloadRow]:
    """The answers kept for a run's failed calls, in the order they came."""
    p = raw_payloads.c
    query = (
        select(p.id, p.location_id, p.call, p.category, p.captured_at, p.size, p.truncated, p.body)
        .where(p.run_id == run_id)
        .order_by(p.id)
    )
    return [PayloadRow(**row) for row in conn.execute(query).mappings()]


def purge_raw_payloads(conn: Connection, *, older_than: datetime) -> int:
    """Payload retention: delete payloads captured before ``older_than``."""
    return conn.execute(
        delete(raw_payloads).where(raw_payloads.c.captured_at < older_than)
    ).rowcount


def purge_runs(conn: Connection, *, older_than: datetime) -> PurgeResult:
    """Run retention: delete logs and payloads of runs finished before ``older_than``.

    The run and item rows stay: they are the small audit trail of what ran and what it loaded.
    """
    old = select(runs.c.id).where(runs.c.finished_at < older_than, runs.c.status.not_in(UNFINISHED))
    logs = conn.execute(delete(run_logs).where(run_logs.c.run_id.in_(old))).rowcount
    payloads = conn.execute(delete(raw_payloads).where(raw_payloads.c.run_id.in_(old))).rowcount
    return PurgeResult(logs=logs, payloads=payloads)
