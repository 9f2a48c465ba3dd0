"""Per (job, location): the sales watermark, the last success and a circuit breaker.

The watermark and last success are written in the same transaction as the rows they describe
(SPEC §4.5), so they can never claim more than was loaded. Every write is one upsert, so the first
run of a new location needs no setup row and two writers cannot lose an increment.

Circuit breaker: ``threshold`` consecutive failures open the circuit until ``now + reset_after``;
runs skip the location meanwhile (``skipped_open_circuit``). Once that time passes the circuit is
half-open: the next run may probe; a success closes it, a failure opens it again for another period.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, case, literal, or_, select

from fluxion_etl.domain.states import ErrorCategory, Job
from fluxion_etl.store.dialect import UpsertInsert, insert_for
from fluxion_etl.store.schema import sync_state
from fluxion_etl.store.types import UtcDateTime

KEY = (sync_state.c.job, sync_state.c.location_id)


@dataclass(frozen=True, slots=True)
class SyncStateRow:
    job: Job
    location_id: str
    watermark: datetime | None  # sales: synced up to here (UTC)
    last_success_at: datetime | None
    last_success_run_id: int | None
    last_attempt_at: datetime | None
    consecutive_failures: int
    circuit_open_until: datetime | None
    last_error_category: ErrorCategory | None  # kept after a success: the last thing that failed
    last_error_message: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> SyncStateRow:
        values = {f.name: row[f.name] for f in fields(cls)}
        category = row["last_error_category"]
        values["last_error_category"] = None if category is None else ErrorCategory(category)
        values["job"] = Job(row["job"])
        return cls(**values)

    def circuit_open(self, now: datetime) -> bool:
        return self.circuit_open_until is not None and now < self.circuit_open_until


def get_state(conn: Connection, job: str, location_id: str) -> SyncStateRow | None:
    query = select(sync_state).where(
        sync_state.c.job == str(job), sync_state.c.location_id == location_id
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else SyncStateRow.from_row(row)


def all_states(conn: Connection) -> list[SyncStateRow]:
    """Every (job, location) ever attempted, for freshness and the dashboard."""
    query = select(sync_state).order_by(sync_state.c.job, sync_state.c.location_id)
    return [SyncStateRow.from_row(row) for row in conn.execute(query).mappings()]


def record_success(
    conn: Connection,
    *,
    job: str,
    location_id: str,
    run_id: int,
    now: datetime,
    watermark: datetime | None = None,
    fresh: bool = True,
) -> None:
    """A success closes the circuit, clears the failure count and may advance the watermark.
    Only a ``fresh`` one (data read up to now, not only past days) is the last success that
    freshness judges."""
    success: dict[str, object] = {
        "last_attempt_at": now,
        "consecutive_failures": 0,
        "circuit_open_until": None,
    }
    if fresh:
        success |= {"last_success_at": now, "last_success_run_id": run_id}
    stmt = _insert(conn, job, location_id, watermark=watermark, **success)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=KEY,
            set_={**{name: stmt.excluded[name] for name in success}, **_forward_watermark(stmt)},
        )
    )


def advance_watermark(conn: Connection, *, job: str, location_id: str, watermark: datetime) -> None:
    """Move the watermark to ``watermark`` unless it is already later (it never goes back)."""
    stmt = _insert(conn, job, location_id, watermark=watermark)
    conn.execute(stmt.on_conflict_do_update(index_elements=KEY, set_=_forward_watermark(stmt)))


def record_failure(
    conn: Connection,
    *,
    job: str,
    location_id: str,
    now: datetime,
    category: str,
    message: str,
    threshold: int,
    reset_after: timedelta,
    reset_max: timedelta | None = None,
) -> SyncStateRow:
    """Count a failure; the ``threshold``-th in a row opens the circuit until now + reset_after.

    Each failed half-open probe after that doubles the period, up to ``reset_max`` (never below
    ``reset_after``; None: no growth): a KLK down for hours is asked less and less often.
    Returns the state afterwards, so the caller can tell (and alert) when the circuit opened.
    """
    error = {"last_attempt_at": now, "last_error_category": str(category)}
    periods = open_periods(reset_after, reset_max)
    opens_now = threshold <= 1
    stmt = _insert(
        conn,
        job,
        location_id,
        **error,
        last_error_message=message,
        consecutive_failures=1,
        circuit_open_until=now + reset_after if opens_now else None,
    )
    failures = sync_state.c.consecutive_failures + 1
    reopen = case(
        (failures < threshold, sync_state.c.circuit_open_until),
        *(
            (failures == threshold + k, literal(now + period, UtcDateTime()))
            for k, period in enumerate(periods[:-1])
        ),
        else_=literal(now + periods[-1], UtcDateTime()),
    )
    row = (
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=KEY,
                set_={
                    **{name: stmt.excluded[name] for name in (*error, "last_error_message")},
                    "consecutive_failures": failures,
                    "circuit_open_until": reopen,
                },
            ).returning(*sync_state.c)
        )
        .mappings()
        .one()
    )
    return SyncStateRow.from_row(row)


def open_periods(reset_after: timedelta, reset_max: timedelta | None) -> list[timedelta]:
    """How long the circuit stays open after the threshold-th failure, then after each failed
    probe: ``reset_after`` doubling up to ``reset_max``; the last period repeats."""
    cap = max(reset_after, reset_max or reset_after)
    periods = [reset_after]
    while periods[-1] < cap and len(periods) < 32:
        periods.append(min(periods[-1] * 2, cap))
    return periods


def circuit_allows(conn: Connection, *, job: str, location_id: str, now: datetime) -> bool:
    """True when the circuit is closed, or open but past its reset time (a half-open probe)."""
    state = get_state(conn, job, location_id)
    return state is None or not state.circuit_open(now)


def _insert(conn: Connection, job: str, location_id: str, **values: Any) -> UpsertInsert:
    return insert_for(conn, sync_state).values(job=str(job), location_id=location_id, **values)


def _forward_watermark(stmt: UpsertInsert) -> dict[str, Any]:
    """SET clause keeping the later of the stored and offered watermark (NULL offers nothing)."""
    stored, offered = sync_state.c.watermark, stmt.excluded.watermark
    later = case((or_(stored.is_(None), offered > stored), offered), else_=stored)
    return {"watermark": later}
