"""The run ledger: every run and its per-location items (log lines and raw payloads: ``runlogs``).

State is data (STYLE §4): a run's status, owner, heartbeat and deadline are columns that every
process reads, so status survives the process that ran it. Transitions are conditional UPDATEs
(``… WHERE status = 'queued'``) whose row count says who won, so two processes never both claim or
both finish a run, and a final status is never overwritten.

Every function takes an open ``Connection`` (the caller owns the transaction: a location's load,
counters, coverage and sync state commit together, SPEC §4.5) and ``now`` from the caller's Clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, bindparam, func, insert, or_, select, update

from fluxion_etl.domain.requests import ItemCounters, RunRequest, SubmitResult
from fluxion_etl.domain.schedules import fire_key
from fluxion_etl.domain.states import (
    ErrorCategory,
    ErrorPhase,
    ItemStatus,
    Job,
    RunStatus,
    Trigger,
)
from fluxion_etl.errors import BadInputError
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.runlogs import (
    LogRow,
    PurgeResult,
    append_log,
    purge_raw_payloads,
    purge_runs,
    read_logs,
    save_raw_payload,
)
from fluxion_etl.store.schema import run_items, runs

if TYPE_CHECKING:
    from fluxion_etl.config import ChainConfig

UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
UNFINISHED_ITEM = (ItemStatus.PENDING.value, ItemStatus.RUNNING.value)
TIMING_COLUMNS = ("extract_ms", "transform_ms", "load_ms")


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    job: Job
    status: RunStatus
    trigger: Trigger
    requested_by: str | None
    scope: tuple[str, ...] | None  # None: every active location
    date_from: date | None
    date_to: date | None
    params: dict[str, Any]
    idempotency_key: str | None
    schedule_name: str | None
    scheduled_for: datetime | None
    launcher: str | None
    external_ref: str | None
    owner: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    deadline_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    error_category: ErrorCategory | None
    error_message: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRow:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["job"], values["status"] = Job(row["job"]), RunStatus(row["status"])
        values["trigger"] = Trigger(row["trigger"])
        values["scope"] = None if row["scope"] is None else tuple(row["scope"])
        values["params"] = dict(row["params"] or {})
        values["error_category"] = _category(row["error_category"])
        return cls(**values)

    def to_request(self) -> RunRequest:
        """The request this run was created from (a launched process gets only the run id)."""
        return RunRequest(
            job=self.job,
            trigger=self.trigger,
            locations=self.scope,
            date_from=self.date_from,
            date_to=self.date_to,
            requested_by=self.requested_by,
            idempotency_key=self.idempotency_key,
            schedule_name=self.schedule_name,
            scheduled_for=self.scheduled_for,
            params=dict(self.params),
        )


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: int
    run_id: int
    location_id: str
    status: ItemStatus
    fetched: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    held: int
    duplicates: int
    extract_ms: int
    transform_ms: int
    load_ms: int
    windows: list[dict[str, Any]] | None
    started_at: datetime | None
    finished_at: datetime | None
    error_category: ErrorCategory | None
    error_phase: ErrorPhase | None
    error_message: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> ItemRow:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["status"] = ItemStatus(row["status"])
        values["error_category"] = _category(row["error_category"])
        phase = row["error_phase"]
        values["error_phase"] = None if phase is None else ErrorPhase(phase)
        return cls(**values)

    @property
    def counters(self) -> ItemCounters:
        return ItemCounters(*(getattr(self, name) for name in ItemCounters.__dataclass_fields__))


def _category(value: str | None) -> ErrorCategory | None:
    return None if value is None else ErrorCategory(value)


# --- runs ------------------------------------------------------------------------------------


def create_run(
    conn: Connection, request: RunRequest, *, now: datetime, launcher: str | None = None
) -> SubmitResult:
    """Insert a queued run, or return the existing run of the same idempotency key.

    ``ON CONFLICT DO NOTHING`` on the unique key makes the check and the insert one atomic step,
    so concurrent deliveries of one fire (at-least-once EventBridge/Lambda) yield exactly one run.
    """
    values = run_values(request, now=now, launcher=launcher)
    if request.idempotency_key is None:
        run_id = conn.execute(insert(runs).values(values).returning(runs.c.id)).scalar_one()
        return SubmitResult(run_id=run_id, created=True, status=RunStatus.QUEUED)
    stmt = (
        insert_for(conn, runs)
        .values(values)
        .on_conflict_do_nothing(index_elements=[runs.c.idempotency_key])
        .returning(runs.c.id)
    )
    run_id = conn.execute(stmt).scalar_one_or_none()
    if run_id is not None:
        return SubmitResult(run_id=run_id, created=True, status=RunStatus.QUEUED)
    existing = conn.execute(
        select(runs.c.id, runs.c.status).where(runs.c.idempotency_key == request.idempotency_key)
    ).one()
    return SubmitResult(run_id=existing.id, created=False, status=RunStatus(existing.status))


# The columns ``run_values`` gives a queued run (the API's insert on its loop is compiled for them).
QUEUED_RUN_COLUMNS = (
    "job",
    "status",
    "trigger",
    "requested_by",
    "scope",
    "date_from",
    "date_to",
    "params",
    "idempotency_key",
    "schedule_name",
    "scheduled_for",
    "launcher",
    "created_at",
    "cancel_requested",
)


def run_values(request: RunRequest, *, now: datetime, launcher: str | None) -> dict[str, Any]:
    """The columns of the queued run ``create_run`` inserts for ``request`` (the API's insert on
    its event loop, ``api.loopreads``, writes the same)."""
    return {
        "job": request.job.value,
        "status": RunStatus.QUEUED.value,
        "trigger": request.trigger.value,
        "requested_by": request.requested_by,
        "scope": None if request.locations is None else list(request.locations),
        "date_from": request.date_from,
        "date_to": request.date_to,
        "params": dict(request.params),
        "idempotency_key": request.idempotency_key,
        "schedule_name": request.schedule_name,
        "scheduled_for": request.scheduled_for,
        "launcher": launcher,
        "created_at": now,
        "cancel_requested": False,
    }


def get_run(conn: Connection, run_id: int) -> RunRow | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    return None if row is None else RunRow.from_row(row)


# Every trigger runs this lookup: built once, it skips rebuilding and re-keying the statement.
_RUNS_BY_KEYS = select(runs).where(runs.c.idempotency_key.in_(bindparam("keys", expanding=True)))
QUEUED_RUNS = select(runs.c.id, runs.c.job, runs.c.scope).where(
    runs.c.status == RunStatus.QUEUED.value
)


# The locations running runs have not finished (their pending and running items; a run creates
# them as it is claimed) and each run's last sign of life: a running run holds them until it
# finishes them, or until its process is presumed dead (no heartbeat for a lease's lifetime).
UNFINISHED_OF_RUNNING = (
    select(
        runs.c.id,
        runs.c.job,
        run_items.c.location_id,
        func.coalesce(runs.c.heartbeat_at, runs.c.started_at, runs.c.created_at).label("alive_at"),
    )
    .join_from(run_items, runs, run_items.c.run_id == runs.c.id)
    .where(
        runs.c.status == RunStatus.RUNNING.value,
        # plain comparisons, not IN: the statement is also compiled once for the event loop's
        # own connection (api.loopreads), where an expanding IN would not render
        or_(*(run_items.c.status == status for status in UNFINISHED_ITEM)),
    )
)


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A location a running run has not finished, and when that run last proved alive."""

    run_id: int
    job: Job
    location_id: str
    alive_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Unfinished:
        return cls(int(row["id"]), Job(row["job"]), str(row["location_id"]), row["alive_at"])


def unfinished_of_running(conn: Connection) -> list[Unfinished]:
    """``UNFINISHED_OF_RUNNING``'s rows."""
    return [Unfinished.from_row(row) for row in conn.execute(UNFINISHED_OF_RUNNING).mappings()]


def run_for_key(conn: Connection, key: str) -> RunRow | None:
    """The run created for idempotency key ``key`` (a unique column), if any."""
    return runs_for_keys(conn, [key]).get(key)


def runs_for_keys(conn: Connection, keys: Sequence[str]) -> dict[str, RunRow]:
    """``run_for_key`` for many keys in one query: the run of each key that has one."""
    if not keys:
        return {}
    found = conn.execute(_RUNS_BY_KEYS, {"keys": list(keys)}).mappings()
    return {str(row["idempotency_key"]): RunRow.from_row(row) for row in found}


def queued_scopes(conn: Connection) -> list[tuple[int, Job, tuple[str, ...] | None]]:
    """(run id, job, scope) of every queued run: they take their locations' leases when they
    start (scope None: every active location)."""
    return [queued_scope(row) for row in conn.execute(QUEUED_RUNS).mappings()]


def queued_scope(row: Mapping[Any, Any]) -> tuple[int, Job, tuple[str, ...] | None]:
    """(run id, job, scope) of a row of ``QUEUED_RUNS``."""
    scope = row["scope"]
    return int(row["id"]), Job(row["job"]), None if scope is None else tuple(scope)


def list_runs(
    conn: Connection,
    *,
    job: str | None = None,
    status: str | None = None,
    location_id: str | None = None,
    trigger: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunRow]:
    """Newest first. ``location_id`` matches runs that have an item for that location."""
    query = select(runs).order_by(runs.c.id.desc()).limit(limit).offset(offset)
    for column, value in ((runs.c.job, job), (runs.c.status, status), (runs.c.trigger, trigger)):
        if value is not None:
            query = query.where(column == str(value))
    if since is not None:
        query = query.where(runs.c.created_at >= since)
    if location_id is not None:
        with_item = select(run_items.c.run_id).where(run_items.c.location_id == location_id)
        query = query.where(runs.c.id.in_(with_item))
    return [RunRow.from_row(row) for row in conn.execute(query).mappings()]


def claim_run(
    conn: Connection, run_id: int, *, owner: str, now: datetime, deadline_at: datetime
) -> bool:
    """queued → running for ``owner``; False when not queued (claimed elsewhere, or cancelled)."""
    result = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.RUNNING.value,
            owner=owner,
            started_at=now,
            heartbeat_at=now,
            deadline_at=deadline_at,
        )
    )
    return result.rowcount == 1


def heartbeat_run(conn: Connection, run_id: int, *, owner: str, now: datetime) -> bool:
    """Prove ``owner`` is alive; returns True when the run should stop.

    That is when a cancel was requested, or when the run is no longer running under this owner (it
    was reaped as abandoned or timed out by another process, so its work would not count).
    """
    cancel = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.owner == owner, runs.c.status == RunStatus.RUNNING.value)
        .values(heartbeat_at=now)
        .returning(runs.c.cancel_requested)
    ).scalar_one_or_none()
    return cancel is None or bool(cancel)


def request_cancel(conn: Connection, run_id: int, *, by: str, now: datetime) -> RunRow | None:
    """A queued run is cancelled at once; a running one is asked to stop: it starts no more
    locations (those loading finish).

    A finished run is left as it is. Returns the run afterwards, None when there is no such run.
    """
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    queued = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.QUEUED.value)
        .values(
            status=RunStatus.CANCELLED.value,
            finished_at=now,
            error_message=f"cancelled by {by} at {stamp} before it started",
        )
    )
    if queued.rowcount == 0:
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
            .values(cancel_requested=True, error_message=f"cancel requested by {by} at {stamp}")
        )
    return get_run(conn, run_id)


def check_location_filter(
    conn: Connection, config: ChainConfig, location_id: str | None, field: str
) -> None:
    """Refuse (``BadInputError`` naming ``field``) a filter on a location that neither the
    configuration nor any run knows: a mistyped id would list nothing and look like good news.
    One removed from the configuration keeps its history (its runs' items). None passes."""
    if location_id is None or config.knows(location_id):
        return
    query = select(run_items.c.id).where(run_items.c.location_id == location_id).limit(1)
    if conn.execute(query).first() is None:
        known = ", ".join(sorted(config.location_ids))
        raise BadInputError(field, f"unknown location {location_id!r}; known: {known}")


def cancel_requested(conn: Connection, run_id: int) -> bool:
    """Whether someone asked the run to stop (``request_cancel``)."""
    query = select(runs.c.cancel_requested).where(runs.c.id == run_id)
    return bool(conn.execute(query).scalar())


def finish_run(
    conn: Connection,
    run_id: int,
    status: RunStatus,
    *,
    now: datetime,
    error_category: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Record a final status; False (nothing written) when the run already has one.

    An error given as None keeps what is there (e.g. who requested a cancel).
    """
    if not status.is_final:
        raise ValueError(f"finish_run needs a final status, not {status.value!r}")
    values: dict[str, Any] = {"status": status.value, "finished_at": now}
    if error_category is not None:
        values["error_category"] = str(error_category)
    if error_message is not None:
        values["error_message"] = error_message
    result = conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.status.in_(UNFINISHED)).values(values)
    )
    return result.rowcount == 1


def set_external_ref(conn: Connection, run_id: int, ref: str) -> None:
    """Where the run executes outside this process (e.g. the ECS task ARN)."""
    conn.execute(update(runs).where(runs.c.id == run_id).values(external_ref=ref))


def clear_external_ref(conn: Connection, run_id: int, ref: str) -> None:
    """Stop pointing at ``ref`` (a duplicate launch that found the run claimed elsewhere)."""
    mine = (runs.c.id == run_id, runs.c.external_ref == ref)
    conn.execute(update(runs).where(*mine).values(external_ref=None))


# --- items -----------------------------------------------------------------------------------


def create_items(conn: Connection, run_id: int, location_ids: Iterable[str]) -> None:
    rows = [
        {"run_id": run_id, "location_id": location_id, "status": ItemStatus.PENDING.value}
        for location_id in location_ids
    ]
    if rows:
        conn.execute(insert(run_items), rows)


def get_items(conn: Connection, run_id: int) -> list[ItemRow]:
    query = select(run_items).where(run_items.c.run_id == run_id).order_by(run_items.c.id)
    return [ItemRow.from_row(row) for row in conn.execute(query).mappings()]


def start_item(conn: Connection, run_id: int, location_id: str, *, now: datetime) -> bool:
    """pending → running; False when the item is not pending."""
    result = conn.execute(
        update(run_items)
        .where(*_item_is(run_id, location_id), run_items.c.status == ItemStatus.PENDING.value)
        .values(status=ItemStatus.RUNNING.value, started_at=now)
    )
    return result.rowcount == 1


def finish_item(
    conn: Connection,
    run_id: int,
    location_id: str,
    status: ItemStatus,
    *,
    now: datetime,
    counters: ItemCounters = ItemCounters(),  # noqa: B008 - frozen, so a shared default is safe
    timings: Mapping[str, int] | None = None,
    windows: list[dict[str, Any]] | None = None,
    error_category: str | None = None,
    error_phase: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Record an item's outcome; False (nothing written) when it already has a final status."""
    if not status.is_final:
        raise ValueError(f"finish_item needs a final status, not {status.value!r}")
    values: dict[str, Any] = {
        "status": status.value,
        "finished_at": now,
        "windows": windows,
        "error_category": error_category,
        "error_phase": error_phase,
        "error_message": error_message,
        **{name: getattr(counters, name) for name in ItemCounters.__dataclass_fields__},
        **{name: int(ms) for name, ms in (timings or {}).items() if name in TIMING_COLUMNS},
    }
    result = conn.execute(
        update(run_items)
        .where(*_item_is(run_id, location_id), run_items.c.status.in_(UNFINISHED_ITEM))
        .values(values)
    )
    return result.rowcount == 1


def fail_unfinished_items(
    conn: Connection, run_id: int, *, now: datetime, category: str | None, message: str
) -> int:
    """Every item of the run still pending or running ends ``failed`` with this error (a run
    ended without them: its process died, or their outcome never reached the database)."""
    return conn.execute(
        update(run_items)
        .where(run_items.c.run_id == run_id, run_items.c.status.in_(UNFINISHED_ITEM))
        .values(
            status=ItemStatus.FAILED.value,
            finished_at=now,
            error_category=category,
            error_message=message,
        )
    ).rowcount


def _item_is(run_id: int, location_id: str) -> tuple[Any, ...]:
    return run_items.c.run_id == run_id, run_items.c.location_id == location_id


def summarize_status(item_statuses: Iterable[ItemStatus | str]) -> RunStatus:
    """A run's status from its items: all succeeded → succeeded; some → partial; none → failed.

    Skipped (busy, open circuit) and unfinished items count as not succeeded: their data was not
    synced by this run. A run with no items, or whose every location was busy, did nothing, which
    is never a success (SPEC §4.4); ``summary_message`` says why.
    """
    statuses = [ItemStatus(s) for s in item_statuses]
    succeeded = statuses.count(ItemStatus.SUCCEEDED)
    if statuses and succeeded == len(statuses):
        return RunStatus.SUCCEEDED
    return RunStatus.PARTIAL if succeeded else RunStatus.FAILED


def summary_message(item_statuses: Iterable[ItemStatus | str]) -> str | None:
    """The run's error message for ``summarize_status``: None when every location succeeded."""
    counts = Counter(ItemStatus(s) for s in item_statuses)
    total, failed = counts.total(), counts.total() - counts[ItemStatus.SUCCEEDED]
    if total == 0:
        return "the run had no locations to sync"
    if failed == 0:
        return None
    if counts[ItemStatus.SKIPPED_BUSY] == total:
        return "every location was busy: another run of this job held each one"
    detail = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items()) if s != "succeeded")
    return f"{failed} of {total} locations did not succeed ({detail})"


# Logs and payloads live in ``runlogs``; they are part of the ledger's public face.
__all__ = [
    "ItemRow",
    "LogRow",
    "PurgeResult",
    "RunRow",
    "append_log",
    "cancel_requested",
    "check_location_filter",
    "claim_run",
    "clear_external_ref",
    "create_items",
    "create_run",
    "fail_unfinished_items",
    "finish_item",
    "finish_run",
    "fire_key",
    "get_items",
    "get_run",
    "heartbeat_run",
    "list_runs",
    "purge_raw_payloads",
    "purge_runs",
    "read_logs",
    "request_cancel",
    "save_raw_payload",
    "set_external_ref",
    "start_item",
    "summarize_status",
    "summary_message",
    "unfinished_of_running",
]
