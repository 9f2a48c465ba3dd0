"""What is wrong right now: the alert conditions, read from the database on the evaluator's clock.

    current_conditions(conn, config, settings, *, now, periods=None) -> list[Condition]

Every condition is a *state* that holds now, never "a run ended", so an evaluation that runs while
no run happens (a stopped scheduler, a disabled schedule) still sees staleness, and a condition is
reported once however many runs keep it true. Each has a key (kind, job, location, subject): one
open alert per key until the condition clears.

- ``location_failing`` (job, location): its last attempts failed (sync state counts consecutive
  failures; a success resets them), or its latest attempt in the last hour failed in a way the
  sync state does not count (an internal error). This is "a failed or partial run", per location.
- ``stale`` (job, location): SPEC §4.12, judged by ``engine.freshness`` with the real periods.
- ``gap`` (sales, location): opening hours without final coverage that ended more than
  ``alerts.gap_threshold_minutes`` ago (younger stretches are for the next scheduled run).
- ``mass_deletion_held`` (job, location): a deletion held back and not yet resolved.
- ``run_failed`` (job): a run failed as a whole (it could not be launched, or its deadline passed)
  within the last hour; no location is to blame, so no location alert covers it.
- ``abandoned_run`` (job): a run was abandoned (its process died) within the last hour.
- ``missed_fire`` (job, schedule): a fire of the schedule was missed (older than its maximum
  event age) within the last hour. Catch-up may start the latest fire at once, so "the last fire
  was missed" would hide it: events hold for an hour instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.states import ErrorCategory, FireOutcome, ItemStatus, Job, RunStatus
from fluxion_etl.engine import freshness
from fluxion_etl.ops.gaps import list_gaps, summarize
from fluxion_etl.settings import Settings
from fluxion_etl.store import held
from fluxion_etl.store.schema import fires, run_items, runs
from fluxion_etl.store.schema import schedules as schedules_table
from fluxion_etl.store.sync_state import SyncStateRow, all_states

EVENT_WINDOW = timedelta(hours=1)


class AlertKind(StrEnum):
    LOCATION_FAILING = "location_failing"
    STALE = "stale"
    GAP = "gap"
    MASS_DELETION_HELD = "mass_deletion_held"
    RUN_FAILED = "run_failed"
    ABANDONED_RUN = "abandoned_run"
    MISSED_FIRE = "missed_fire"


# What to do next, per kind: every message says it (STYLE §5).
NEXT_STEP = {
    AlertKind.LOCATION_FAILING: "read the failed run's log: "
    "`fluxion-etl runs list --location {loc}`, then `fluxion-etl runs logs RUN_ID`",
    AlertKind.STALE: "check `fluxion-etl freshness` and whether its schedule is enabled",
    AlertKind.GAP: "recover it: `fluxion-etl gaps recover --location {loc}`",
    AlertKind.MASS_DELETION_HELD: "check KLK, then apply it: "
    "`fluxion-etl run reconcile --location {loc} --allow-mass-deletion`",
    AlertKind.RUN_FAILED: "see `fluxion-etl runs list --status failed` and the launcher's log",
    AlertKind.ABANDONED_RUN: "its process died: check the host or task that ran it",
    AlertKind.MISSED_FIRE: "check the scheduler: `fluxion-etl schedules check`",
}


@dataclass(frozen=True, slots=True)
class Condition:
    kind: AlertKind
    summary: str
    job: str | None = None
    location_id: str | None = None
    subject: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        parts = (self.kind.value, self.job, self.location_id, self.subject)
        return ":".join(part or "-" for part in parts)

    @property
    def next_step(self) -> str:
        return NEXT_STEP[self.kind].format(loc=self.location_id or "LOCATION")


def current_conditions(
    conn: Connection,
    config: ChainConfig,
    settings: Settings,
    *,
    now: datetime,
    periods: Mapping[Job, timedelta] | None = None,
) -> list[Condition]:
    """Every condition that holds at ``now``."""
    active = {loc.id for loc in config.locations if loc.active}
    states = all_states(conn)
    return [
        *failing_locations(states, active),
        *failed_items(conn, active, now=now),
        *stale_locations(states, config, settings, now=now, periods=periods),
        *old_gaps(conn, config, settings, now=now),
        *held_deletions(conn, active),
        *run_events(conn, now=now),
        *missed_fires(conn, now=now),
    ]


def failing_locations(states: Iterable[SyncStateRow], active: set[str]) -> list[Condition]:
    out = []
    for state in states:
        if state.consecutive_failures <= 0 or state.location_id not in active:
            continue
        category = state.last_error_category.value if state.last_error_category else "internal"
        circuit = state.circuit_open_until
        out.append(
            Condition(
                AlertKind.LOCATION_FAILING,
                f"{state.job.value} failing at {state.location_id}: "
                f"{state.consecutive_failures} failed attempt(s) in a row; "
                f"last error {category}: {(state.last_error_message or '')[:300]}",
                job=state.job.value,
                location_id=state.location_id,
                detail={
                    "consecutive_failures": state.consecutive_failures,
                    "category": category,
                    "last_attempt_at": _iso(state.last_attempt_at),
                    "last_success_at": _iso(state.last_success_at),
                    "circuit_open_until": _iso(circuit),
                },
            )
        )
    return out


def failed_items(conn: Connection, active: set[str], *, now: datetime) -> list[Condition]:
    """Locations whose latest attempt in the last hour failed though the sync state does not
    count it (an internal error is no KLK failure and opens no circuit). Only items that ran
    (they have an error phase): one a cancel or a shutdown left unstarted is no failure."""
    query = (
        select(
            runs.c.job,
            run_items.c.location_id,
            run_items.c.status,
            run_items.c.error_phase,
            run_items.c.error_message,
            run_items.c.run_id,
        )
        .join(runs, runs.c.id == run_items.c.run_id)
        .where(
            runs.c.finished_at >= now - EVENT_WINDOW,
            run_items.c.status.in_([ItemStatus.SUCCEEDED.value, ItemStatus.FAILED.value]),
        )
        .order_by(run_items.c.finished_at, run_items.c.id)
    )
    latest = {(str(row.job), str(row.location_id)): row for row in conn.execute(query)}
    return [
        Condition(
            AlertKind.LOCATION_FAILING,
            f"{job} failing at {location_id}: run {row.run_id} failed there: "
            f"{(row.error_message or '')[:300]}",
            job=job,
            location_id=location_id,
            detail={"run_id": int(row.run_id), "phase": row.error_phase},
        )
        for (job, location_id), row in latest.items()
        if row.status == ItemStatus.FAILED.value
        and row.error_phase is not None
        and location_id in active
    ]


def stale_locations(
    states: Iterable[SyncStateRow],
    config: ChainConfig,
    settings: Settings,
    *,
    now: datetime,
    periods: Mapping[Job, timedelta] | None,
) -> list[Condition]:
    last = {(s.job.value, s.location_id): s.last_success_at for s in states}
    verdicts = freshness.judge_all(
        config.locations,
        last,
        now=now,
        deadlines=freshness.deadlines_from(settings.deadline_seconds),
        periods=periods,
    )
    return [_stale(verdict) for verdict in verdicts if verdict.stale]


def _stale(verdict: freshness.Freshness) -> Condition:
    limit = _duration(verdict.threshold_seconds)
    if verdict.age_seconds is None:
        summary = f"{verdict.job.value} data of {verdict.location_id} is stale: never synced"
    else:
        summary = (
            f"{verdict.job.value} data of {verdict.location_id} is stale: last success "
            f"{_duration(verdict.age_seconds)} ago (allowed {limit})"
        )
    return Condition(
        AlertKind.STALE,
        summary,
        job=verdict.job.value,
        location_id=verdict.location_id,
        detail={
            "last_success_at": _iso(verdict.last_success_at),
            "age_seconds": verdict.age_seconds,
            "threshold_seconds": verdict.threshold_seconds,
        },
    )


def old_gaps(
    conn: Connection, config: ChainConfig, settings: Settings, *, now: datetime
) -> list[Condition]:
    threshold = timedelta(minutes=config.alerts.gap_threshold_minutes)
    gaps = list_gaps(conn, config, now=now, days=settings.gap_days)
    due = [g for g in gaps if g.age(now) >= threshold]
    out = []
    for location_id, summary in summarize(due).items():
        days = ", ".join(day.isoformat() for day in summary.days)
        read_empty = summary.provisional_seconds
        note = f" ({_duration(read_empty)} of it read as empty)" if read_empty else ""
        out.append(
            Condition(
                AlertKind.GAP,
                f"{location_id}: {_duration(summary.seconds)} of opening hours without synced "
                f"sales on {days}{note}",
                job=Job.SALES.value,
                location_id=location_id,
                detail={
                    "gaps": summary.count,
                    "seconds": summary.seconds,
                    "provisional_seconds": read_empty,
                    "days": [day.isoformat() for day in summary.days],
                },
            )
        )
    return out


def held_deletions(conn: Connection, active: set[str]) -> list[Condition]:
    grouped: dict[tuple[str, str], list[held.HeldDeletion]] = {}
    for row in held.open_held_deletions(conn):
        if row.location_id in active:
            grouped.setdefault((row.job, row.location_id), []).append(row)
    out = []
    for (job, location_id), rows in grouped.items():
        what = "; ".join(f"{r.subject}: {r.would_delete} of {r.total}" for r in rows[:5])
        out.append(
            Condition(
                AlertKind.MASS_DELETION_HELD,
                f"{location_id}: mass deletion held back ({what}); nothing was deleted",
                job=job,
                location_id=location_id,
                detail={"held": [r.subject for r in rows], "runs": [r.run_id for r in rows]},
            )
        )
    return out


def run_events(conn: Connection, *, now: datetime) -> list[Condition]:
    """Runs abandoned, or failed as a whole (launch failure, deadline), in the last hour."""
    whole_run = or_(
        runs.c.status.in_([RunStatus.TIMED_OUT.value, RunStatus.ABANDONED.value]),
        and_(
            runs.c.status == RunStatus.FAILED.value,
            runs.c.error_category == ErrorCategory.LAUNCH.value,
        ),
    )
    query = (
        select(runs.c.id, runs.c.job, runs.c.status, runs.c.error_message)
        .where(whole_run, runs.c.finished_at >= now - EVENT_WINDOW)
        .order_by(runs.c.id.desc())
        .limit(200)
    )
    grouped: dict[tuple[AlertKind, str], list[Any]] = {}
    for row in conn.execute(query):
        kind = (
            AlertKind.ABANDONED_RUN
            if row.status == RunStatus.ABANDONED.value
            else AlertKind.RUN_FAILED
        )
        grouped.setdefault((kind, str(row.job)), []).append(row)
    out = []
    for (kind, job), rows in grouped.items():
        latest = rows[0]
        what = "abandoned" if kind is AlertKind.ABANDONED_RUN else str(latest.status)
        out.append(
            Condition(
                kind,
                f"{job} run {latest.id} {what}: {(latest.error_message or '')[:300]}"
                + (f" ({len(rows)} such runs in the last hour)" if len(rows) > 1 else ""),
                job=job,
                detail={"runs": [int(r.id) for r in rows]},
            )
        )
    return out


def missed_fires(conn: Connection, *, now: datetime) -> list[Condition]:
    query = (
        select(fires.c.schedule_name, fires.c.scheduled_for, schedules_table.c.job)
        .join(schedules_table, schedules_table.c.name == fires.c.schedule_name)
        .where(
            fires.c.outcome == FireOutcome.MISSED.value,
            fires.c.recorded_at >= now - EVENT_WINDOW,
        )
        .order_by(fires.c.scheduled_for.desc())
        .limit(500)
    )
    grouped: dict[tuple[str, str], list[datetime]] = {}
    for row in conn.execute(query):
        grouped.setdefault((str(row.schedule_name), str(row.job)), []).append(row.scheduled_for)
    out = []
    for (name, job), missed in grouped.items():
        when = ", ".join(at.isoformat(timespec="minutes") for at in missed[:5])
        out.append(
            Condition(
                AlertKind.MISSED_FIRE,
                f"schedule {name} missed {len(missed)} fire(s) in the last hour ({when})",
                job=job,
                subject=name,
                detail={"fires": [_iso(at) for at in missed]},
            )
        )
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} days"


def keys(conditions: Iterable[Condition]) -> dict[str, Condition]:
    """Conditions by key (the first one wins, should a reader return a key twice)."""
    out: dict[str, Condition] = {}
    for condition in conditions:
        out.setdefault(condition.key, condition)
    return out
