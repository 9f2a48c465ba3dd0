"""Gap recovery: bounded sales backfills of the days that have gaps, tracked like any run.

    plan_recovery(gaps, *, max_range_days) -> list[RecoveryPlan]                       (pure)
    recover_gaps(engine, *, config, settings, clock, location_id=None, days=14,
                 requested_by, launch=None, launcher=None) -> list[RecoveryRun]
    auto_recover(engine, *, config, settings, clock, launch, launcher=None) -> list[RecoveryRun]

A recovery run is an ordinary sales backfill (``trigger=recovery``) of one location, from its
first to its last gap day (split when that exceeds ``max_range_days``). The backfill skips days
already fully and finally covered and re-reads every other day whole, so provisional stretches are
checked again and voids of those days are applied, through the one runner (SPEC §4.1) and its
leases: the location's lease is held one day at a time, so scheduled runs interleave.

``recover_gaps`` (CLI, API, control centre) submits one run per location that has gaps, unless a
recovery of that location is already queued or running (that run is returned, ``created=False``).
``launch(run_id)`` hands each new run to a launcher; without it the caller executes them.

``auto_recover`` (the service's maintenance loop) is the bounded, automatic form. It only takes
gaps that ended more than ``alerts.gap_threshold_minutes`` ago (younger stretches are for the next
scheduled run), keeps at most ``auto_recover_max_in_flight`` recovery runs queued or running, and
skips a location whose sales lease is held, whose circuit is open, or that had a recovery run in
the last ``auto_recover_cooldown_minutes`` (a location that keeps failing, or a stretch that keeps
reading empty, is not hammered): so it never starves the scheduled runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.ops.gaps import DEFAULT_DAYS, LocationGap, list_gaps
from fluxion_etl.settings import Settings
from fluxion_etl.store import leases, ledger, sync_state

AUTO_REQUESTER = "auto-recovery"
UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """One recovery run to submit: a location's gap days, as one inclusive local date range."""

    location_id: str
    date_from: date
    date_to: date
    gap_days: tuple[date, ...]
    oldest_gap_end: datetime


@dataclass(frozen=True, slots=True)
class RecoveryRun:
    """A submitted (or already running) recovery; ``created`` is False for one found in flight."""

    location_id: str
    run_id: int
    created: bool
    date_from: date
    date_to: date
    gap_days: tuple[date, ...]


def plan_recovery(gaps: Iterable[LocationGap], *, max_range_days: int) -> list[RecoveryPlan]:
    """Per location, its gap days as ranges of at most ``max_range_days`` days, oldest first."""
    by_location: dict[str, list[LocationGap]] = {}
    for gap in gaps:
        by_location.setdefault(gap.location_id, []).append(gap)
    plans: list[RecoveryPlan] = []
    for location_id, items in by_location.items():
        for chunk in _chunks(sorted({g.day for g in items}), max_range_days):
            ends = [g.end for g in items if g.day in chunk]
            plans.append(RecoveryPlan(location_id, chunk[0], chunk[-1], tuple(chunk), min(ends)))
    return sorted(plans, key=lambda plan: plan.oldest_gap_end)


def _chunks(days: Sequence[date], max_range_days: int) -> list[list[date]]:
    chunks: list[list[date]] = []
    for day in days:
        if chunks and (day - chunks[-1][0]).days < max_range_days:
            chunks[-1].append(day)
        else:
            chunks.append([day])
    return chunks


def recover_gaps(
    engine: Engine,
    *,
    config: ChainConfig,
    settings: Settings,
    clock: Clock,
    requested_by: str,
    location_id: str | None = None,
    days: int = DEFAULT_DAYS,
    launch: Callable[[int], None] | None = None,
    launcher: str | None = None,
) -> list[RecoveryRun]:
    """Submit a recovery run for each location with gaps (see the module)."""
    now = clock.now()
    with engine.connect() as conn:
        gaps = list_gaps(conn, config, now=now, days=days, location_id=location_id)
        in_flight = recoveries_in_flight(conn)
    plans = plan_recovery(gaps, max_range_days=settings.max_range_days)
    out: list[RecoveryRun] = []
    for plan in plans:
        running = in_flight.get(plan.location_id)
        if running is not None:
            out.append(_found(plan, running))
            continue
        out.append(
            _submit(
                engine,
                plan,
                config=config,
                settings=settings,
                clock=clock,
                requested_by=requested_by,
                launcher=launcher,
            )
        )
    for run in out:
        if run.created and launch is not None:
            launch(run.run_id)
    return out


def auto_recover(
    engine: Engine,
    *,
    config: ChainConfig,
    settings: Settings,
    clock: Clock,
    launch: Callable[[int], None],
    launcher: str | None = None,
) -> list[RecoveryRun]:
    """Submit and launch the few recovery runs that are due now (see the module)."""
    now = clock.now()
    threshold = timedelta(minutes=config.alerts.gap_threshold_minutes)
    cooldown = timedelta(minutes=settings.auto_recover_cooldown_minutes)
    with engine.connect() as conn:
        gaps = list_gaps(conn, config, now=now, days=settings.gap_days)
        in_flight = recoveries_in_flight(conn)
        blocked = _blocked_locations(conn, now=now, since=now - cooldown)
    room = settings.auto_recover_max_in_flight - len(in_flight)
    due = [g for g in gaps if g.age(now) >= threshold and g.location_id not in blocked]
    started: list[RecoveryRun] = []
    for plan in plan_recovery(due, max_range_days=settings.max_range_days):
        if len(started) >= room:
            break
        if plan.location_id in in_flight or any(r.location_id == plan.location_id for r in started):
            continue
        run = _submit(
            engine,
            plan,
            config=config,
            settings=settings,
            clock=clock,
            requested_by=AUTO_REQUESTER,
            launcher=launcher,
        )
        launch(run.run_id)
        started.append(run)
    return started


def recoveries_in_flight(conn: Connection) -> dict[str, int]:
    """Recovery runs queued or running, by location."""
    out: dict[str, int] = {}
    for status in UNFINISHED:
        for run in ledger.list_runs(
            conn, trigger=Trigger.RECOVERY.value, status=status.value, limit=500
        ):
            for location_id in run.scope or ():
                out.setdefault(location_id, run.id)
    return out


def _blocked_locations(conn: Connection, *, now: datetime, since: datetime) -> set[str]:
    """Locations auto-recovery leaves alone now: busy, circuit open, or recovered recently."""
    busy = {
        lease.location_id
        for lease in leases.list_leases(conn)
        if lease.job is Job.SALES and lease.expires_at > now
    }
    open_circuit = {
        state.location_id
        for state in sync_state.all_states(conn)
        if state.job is Job.SALES and state.circuit_open(now)
    }
    recent = {
        location_id
        for run in ledger.list_runs(conn, trigger=Trigger.RECOVERY.value, since=since, limit=500)
        for location_id in run.scope or ()
    }
    return busy | open_circuit | recent


def _submit(
    engine: Engine,
    plan: RecoveryPlan,
    *,
    config: ChainConfig,
    settings: Settings,
    clock: Clock,
    requested_by: str,
    launcher: str | None,
) -> RecoveryRun:
    request = RunRequest(
        job=Job.SALES,
        trigger=Trigger.RECOVERY,
        locations=(plan.location_id,),
        date_from=plan.date_from,
        date_to=plan.date_to,
        requested_by=requested_by,
        params={"gap_days": [day.isoformat() for day in plan.gap_days]},
    )
    result = submit(
        engine, request, config=config, settings=settings, clock=clock, launcher=launcher
    )
    return RecoveryRun(
        plan.location_id, result.run_id, True, plan.date_from, plan.date_to, plan.gap_days
    )


def _found(plan: RecoveryPlan, run_id: int) -> RecoveryRun:
    return RecoveryRun(plan.location_id, run_id, False, plan.date_from, plan.date_to, plan.gap_days)
