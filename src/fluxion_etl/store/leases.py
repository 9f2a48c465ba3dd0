"""Leases: at most one run of a job per location at a time, enforced by the database (SPEC §4.3).

A lease is a row keyed by (job, location_id). Taking it is one ``INSERT … ON CONFLICT DO UPDATE …
WHERE leases.expires_at <= :now`` statement: the database decides atomically whether the row was
absent, expired (taken over) or live (busy), so two processes racing can never both win: the old
guard was check-then-insert and compared local time with UTC. A live run renews its leases with its
heartbeat; a run whose process died stops renewing, and ``reap_expired`` (run by any live process,
no restart needed) marks it abandoned, fails its unfinished items and frees its leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, RowMapping, delete, func, or_, select, update

from fluxion_etl.domain.states import ErrorCategory, Job, RunStatus
from fluxion_etl.store import ledger
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.schema import leases, runs


@dataclass(frozen=True, slots=True)
class LeaseRow:
    job: Job
    location_id: str
    run_id: int
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> LeaseRow:
        return cls(**{**row, "job": Job(row["job"])})


@dataclass(frozen=True, slots=True)
class Acquisition:
    """The answer of ``try_acquire``.

    ``holder`` is the lease as it stands afterwards (ours when acquired, the busy run's otherwise);
    ``took_over_from`` names the run whose *expired* lease we replaced, for the log.
    """

    acquired: bool
    holder: LeaseRow | None
    took_over_from: int | None = None


def try_acquire(
    conn: Connection,
    *,
    job: str,
    location_id: str,
    run_id: int,
    owner: str,
    now: datetime,
    ttl: timedelta,
) -> Acquisition:
    """Take the (job, location) lease for ``run_id`` if it is free, expired, or already ours."""
    before = holder(conn, job, location_id)  # only to report a takeover; the upsert decides
    fresh = {"run_id": run_id, "owner": owner, "acquired_at": now, "heartbeat_at": now}
    stmt = insert_for(conn, leases).values(
        job=str(job), location_id=location_id, expires_at=now + ttl, **fresh
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[leases.c.job, leases.c.location_id],
        set_={name: stmt.excluded[name] for name in (*fresh, "expires_at")},
        where=or_(leases.c.expires_at <= now, leases.c.run_id == run_id),
    ).returning(*leases.c)
    row = conn.execute(upsert).mappings().first()
    if row is None:
        return Acquisition(acquired=False, holder=holder(conn, job, location_id))
    expired = before is not None and before.run_id != run_id and before.expires_at <= now
    took_over = before.run_id if expired and before is not None else None
    return Acquisition(acquired=True, holder=LeaseRow.from_row(row), took_over_from=took_over)


def renew(conn: Connection, *, run_id: int, owner: str, now: datetime, ttl: timedelta) -> int:
    """Extend every lease ``run_id`` holds (with its heartbeat); returns how many it still holds."""
    result = conn.execute(
        update(leases)
        .where(leases.c.run_id == run_id, leases.c.owner == owner)
        .values(heartbeat_at=now, expires_at=now + ttl)
    )
    return result.rowcount


def release(conn: Connection, *, job: str, location_id: str, run_id: int) -> bool:
    """Free the lease if ``run_id`` still holds it (never someone else's)."""
    result = conn.execute(
        delete(leases).where(
            leases.c.job == str(job),
            leases.c.location_id == location_id,
            leases.c.run_id == run_id,
        )
    )
    return result.rowcount == 1


def release_all(conn: Connection, run_id: int) -> int:
    return conn.execute(delete(leases).where(leases.c.run_id == run_id)).rowcount


def holder(conn: Connection, job: str, location_id: str) -> LeaseRow | None:
    query = select(leases).where(leases.c.job == str(job), leases.c.location_id == location_id)
    row = conn.execute(query).mappings().first()
    return None if row is None else LeaseRow.from_row(row)


def list_leases(conn: Connection) -> list[LeaseRow]:
    query = select(leases).order_by(leases.c.job, leases.c.location_id)
    return [LeaseRow.from_row(row) for row in conn.execute(query).mappings()]


# --- reaping ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    status: RunStatus
    category: ErrorCategory | None
    message: str


def reap_expired(conn: Connection, *, now: datetime, ttl: timedelta) -> list[int]:
    """End runs whose process is gone, free their leases and every expired lease.

    A ``running`` run with no heartbeat for ``ttl`` is ``abandoned``; one still heartbeating but
    more than ``ttl`` past its deadline is ``timed_out`` (its process is stuck). Their unfinished
    items fail with the same message, so the windows stay uncovered for the next run. Each run is
    reaped by exactly one process even when several reap at once: the UPDATE re-checks the
    condition and only the process whose UPDATE matched acts. Returns the run ids this call reaped.
    """
    cutoff = now - ttl
    candidates = conn.execute(
        select(
            runs.c.id, runs.c.owner, _last_sign_of_life().label("alive_at"), runs.c.deadline_at
        ).where(
            runs.c.status == RunStatus.RUNNING.value,
            or_(_last_sign_of_life() < cutoff, runs.c.deadline_at < cutoff),
        )
    ).all()
    reaped = [row.id for row in candidates if _reap(conn, row, cutoff=cutoff, now=now, ttl=ttl)]
    conn.execute(delete(leases).where(or_(leases.c.run_id.in_(reaped), leases.c.expires_at <= now)))
    return reaped


def abandon_run(conn: Connection, run_id: int, *, now: datetime, message: str) -> bool:
    """End a run whose process is known to be gone: the run ``abandoned`` (``worker_lost``), its
    unfinished items failed with the same message, its leases freed. False (nothing written) when
    the run has already ended. The caller decides that the process is gone (a launcher that saw
    its worker exit, and made sure the worker was the run's owner)."""
    lost = ErrorCategory.WORKER_LOST.value
    if not ledger.finish_run(
        conn, run_id, RunStatus.ABANDONED, now=now, error_category=lost, error_message=message
    ):
        return False
    ledger.fail_unfinished_items(conn, run_id, now=now, category=lost, message=message)
    release_all(conn, run_id)
    return True


def _last_sign_of_life() -> ColumnElement[datetime]:
    """The run's last heartbeat (claiming sets it; the fallbacks only guard hand-made rows)."""
    return func.coalesce(runs.c.heartbeat_at, runs.c.started_at, runs.c.created_at)


def _reap(
    conn: Connection, row: Row[Any], *, cutoff: datetime, now: datetime, ttl: timedelta
) -> bool:
    """Mark one run if it is still due (another process may have reaped or it may have beaten)."""
    verdict = _verdict(row, cutoff=cutoff, ttl=ttl)
    still_due = (
        _last_sign_of_life() < cutoff
        if verdict.status is RunStatus.ABANDONED
        else runs.c.deadline_at < cutoff
    )
    marked = conn.execute(
        update(runs)
        .where(runs.c.id == row.id, runs.c.status == RunStatus.RUNNING.value, still_due)
        .values(
            status=verdict.status.value,
            finished_at=now,
            error_category=verdict.category.value if verdict.category else None,
            error_message=verdict.message,
        )
    ).rowcount
    if marked:
        category = verdict.category.value if verdict.category else None
        ledger.fail_unfinished_items(
            conn, row.id, now=now, category=category, message=verdict.message
        )
    return marked == 1


def _verdict(row: Row[Any], *, cutoff: datetime, ttl: timedelta) -> _Verdict:
    owner = row.owner or "unknown"
    if row.alive_at < cutoff:
        return _Verdict(
            RunStatus.ABANDONED,
            ErrorCategory.WORKER_LOST,
            f"lease expired: no heartbeat since {_stamp(row.alive_at)} "
            f"(process {owner} presumed dead)",
        )
    return _Verdict(
        RunStatus.TIMED_OUT,
        ErrorCategory.DEADLINE,
        f"deadline {_stamp(row.deadline_at)} passed more than {ttl} ago and process {owner} "
        "did not finish the run",
    )


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds")
