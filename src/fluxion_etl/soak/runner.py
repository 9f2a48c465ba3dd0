"""One soak, start to verdict:

1. draw the fault plan from the seed and print it
2. bring up the stack (own PostgreSQL, simulator, two services) on one simulated clock
3. fault phase: post the KLK faults, carry out every action at its simulated instant
4. catch-up: clear the faults, let the schedules run, the nightly reconcile fire, then do
   what an operator would (reconcile the whole period, recover gaps) and wait it out
5. stop both services cleanly, wait for their workers
6. check every invariant against the database and the simulator's truth
7. print the summary; the exit code says whether every invariant held
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from fluxion_etl.domain import cron
from fluxion_etl.soak import check_data, check_ledger
from fluxion_etl.soak.chaos import Chaos
from fluxion_etl.soak.cluster import COMMIT_FAULT_MESSAGE
from fluxion_etl.soak.modes import CARACAS, MODES, SoakMode, Timeline
from fluxion_etl.soak.plan import ActionKind, FaultPlan, KlkKind, describe, draw_plan
from fluxion_etl.soak.procs import workers
from fluxion_etl.soak.report import Summary, print_summary
from fluxion_etl.soak.stack import HANG_FACTOR, KLK_READ_TIMEOUT, STARTUP_TIMEOUT, Stack, soak_stack
from fluxion_etl.soak.verdict import Findings
from fluxion_etl.store.schema import fires, run_items, runs

RUN_TIMEOUT = 600.0  # real seconds a run may take to end in the catch-up phase
# Fires are checked from a little after the services answered: a scheduler's first tick starts
# from the time it first looks, so a fire due in the first instants may not be its to fire.
READY_MARGIN = timedelta(minutes=5)
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SoakOptions:
    mode: str = "short"
    seed: int = 1
    speed: float | None = None  # None: the mode's
    days: int | None = None
    locations: int | None = None
    keep: bool = False

    def resolved(self) -> SoakMode:
        base = MODES[self.mode]
        return replace(
            base,
            days=self.days or base.days,
            locations=self.locations or base.locations,
            speed=self.speed or base.speed,
        )


def run_soak(options: SoakOptions, say: Say = print) -> int:
    """0 when every invariant held, 1 when one did not."""
    mode = options.resolved()
    timeline = mode.timeline()
    plan = draw_plan(mode, options.seed, hang_seconds=KLK_READ_TIMEOUT * HANG_FACTOR)
    say(f"soak {mode.name}, seed {options.seed}: {mode.days} day(s) under faults, "
        f"{mode.locations} locations, {mode.skus} SKUs, ~{mode.lines_per_day} lines/day, "
        f"clock x{mode.speed:g}")  # fmt: skip
    for line in describe(plan, timeline):
        say(line)
    began = time.monotonic()
    with soak_stack(
        mode, seed=options.seed, speed=mode.speed, locations=mode.locations, keep=options.keep
    ) as stack:
        say(f"work directory (logs): {stack.workdir}")
        ready_at = stack.clock.now() + READY_MARGIN
        say(f"services ready at {stack.clock.now().astimezone(CARACAS):%a %H:%M} (simulated)")
        chaos = _fault_phase(stack, mode, plan, timeline, say)
        _catch_up(stack, mode, timeline, say)
        stopped_at = _stop_services(stack, say)
        findings = _check(
            stack, mode, plan, timeline, chaos, ready_at=ready_at, stopped_at=stopped_at
        )
        summary = _summarize(
            stack,
            mode=mode,
            seed=options.seed,
            ready_at=ready_at,
            stopped_at=stopped_at,
            findings=findings,
            chaos=chaos,
        )
        summary.real_seconds = time.monotonic() - began
        summary.extra.append(
            f"clock      below full speed for {stack.clock.slowed_seconds:.0f} real seconds "
            "(the service lagged: runs in flight piled up)"
        )
        print_summary(summary, say)
        stack.keep_workdir = bool(findings.violations)
        if stack.keep_workdir or options.keep:
            dumped = stack.cluster.dump(stack.workdir / "soak.dump")
            say(f"database   {'soak.dump (pg_restore it)' if dumped else 'pg_dump failed'}")
        return 1 if findings.violations else 0


# --- phases ----------------------------------------------------------------------------------


def _sleep_until(stack: Stack, instant: datetime) -> None:
    while (left := (instant - stack.clock.now()).total_seconds()) > 0:
        time.sleep(min(left / stack.clock.speed, 0.5))


def _fault_phase(
    stack: Stack, mode: SoakMode, plan: FaultPlan, timeline: Timeline, say: Say
) -> Chaos:
    stack.sim_control.add_faults(plan.klk_specs())
    chaos = Chaos(
        clock=stack.clock, mode=mode, seed=plan.seed, serves=stack.serves, marker=stack.marker,
        cluster=stack.cluster, db=stack.db, api=stack.api, serve_timeout=STARTUP_TIMEOUT, say=say,
    )  # fmt: skip
    say("fault phase:")
    for action in plan.actions:
        _sleep_until(stack, action.at)
        if stack.clock.now() >= timeline.faults_until:
            chaos.missed.append(f"{action.kind.value}: the soak ran too late to inject it")
            continue
        chaos.run(action)
    _sleep_until(stack, timeline.faults_until)
    stack.sim_control.clear_faults()
    for serve in stack.serves:  # a process killed at the very end is back for the catch-up
        if not serve.alive():
            serve.start(STARTUP_TIMEOUT)
    say(f"  {stack.clock.now().astimezone(CARACAS):%a %H:%M}  faults cleared")
    return chaos


def _catch_up(stack: Stack, mode: SoakMode, timeline: Timeline, say: Say) -> None:
    say("catch-up:")
    _sleep_until(stack, timeline.reconcile_fire + timedelta(minutes=1))
    _wait_runs_over(stack, job="reconcile")
    _sleep_until(stack, timeline.operator_at)
    _operator_reconcile(stack, timeline, say)
    _operator_recover(stack, timeline, say)
    _operator_sync(stack, say)
    _wait_fires_recorded(stack)


def _operator_reconcile(stack: Stack, timeline: Timeline, say: Say) -> None:
    """What an operator does after an incident: re-read every day of the period whole."""
    days = timeline.reconcile_days
    _operator_run(
        stack, "/api/etl/sync/reconcile", {"days": days}, f"reconcile of {days} days", say
    )


def _operator_recover(stack: Stack, timeline: Timeline, say: Say) -> None:
    days = timeline.reconcile_days + 1
    code, body = stack.api.call(0, "/api/etl/gaps/recover", {"days": days})
    if code == 404:
        say("  operator: this build has no gap recovery API (POST /api/etl/gaps/recover)")
        return
    started = [int(r["run_id"]) for r in body.get("runs", [])]
    results = {run_id: _wait_run(stack, run_id) for run_id in started}
    say(f"  operator: gap recovery over {days} days: HTTP {code}, runs {results}")


def _operator_sync(stack: Stack, say: Say) -> None:
    """A last sync of every location, so the newest lines and stock are read after the faults."""
    _operator_run(stack, "/api/etl/sync/ventas", {"ubicacion_id": None}, "sales sync", say)
    _operator_run(stack, "/api/etl/sync", {"ubicacion_id": None}, "inventory sync", say)


def _operator_run(stack: Stack, path: str, body: dict[str, object], what: str, say: Say) -> None:
    """Trigger, wait for the run, and try again (a new key) until it succeeds, three times at
    most: a 409 (another run holds every location) or a partial run is retried a little later."""
    for attempt in range(1, 4):
        key = f"soak-operator-{path.rsplit('/', 1)[-1]}-{attempt}"
        answer = stack.api.post(attempt, path, body, {"Idempotency-Key": key})
        ours = answer.status_code in (200, 202) and answer.run_id is not None
        status = _wait_run(stack, answer.run_id) if ours and answer.run_id else "not started"
        say(f"  operator: {what}: HTTP {answer.status_code}, run {answer.run_id}: {status}")
        if status == "succeeded":
            return
        stack.clock.sleep(600)


def _wait_run(stack: Stack, run_id: int) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        with stack.db.connect() as conn:
            status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
        if status not in (None, "queued", "running"):
            return str(status)
        time.sleep(0.3)
    return "still unfinished after the catch-up timeout"


def _wait_runs_over(stack: Stack, *, job: str | None = None) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    query = select(func.count()).where(runs.c.status.in_(("queued", "running")))
    if job is not None:
        query = query.where(runs.c.job == job)
    while time.monotonic() < deadline:
        with stack.db.connect() as conn:
            if not conn.execute(query).scalar():
                return
        time.sleep(0.3)


def _wait_fires_recorded(stack: Stack) -> None:
    """Every fire due by now has its outcome, so stopping now leaves no fire half-handled."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        now = stack.clock.now()
        with stack.db.connect() as conn:
            pending = [
                s for s in stack.config.schedules or ()
                if not _fire_recorded(conn, s.name, cron.previous_fire(s.cron, s.timezone, now))
            ]  # fmt: skip
        if not pending:
            return
        time.sleep(0.3)


def _fire_recorded(conn: Connection, name: str, instant: datetime) -> bool:
    query = select(fires.c.outcome).where(
        fires.c.schedule_name == name, fires.c.scheduled_for == instant
    )
    return conn.execute(query).first() is not None


def _stop_services(stack: Stack, say: Say) -> datetime:
    stack.clock.hold()
    stopped_at = stack.clock.now()
    for serve in stack.serves:
        serve.stop(120.0)
    deadline = time.monotonic() + RUN_TIMEOUT
    while workers(stack.marker) and time.monotonic() < deadline:
        time.sleep(0.3)
    say(f"  both services stopped at {stopped_at.astimezone(CARACAS):%a %H:%M}")
    return stopped_at


# --- checks and summary ----------------------------------------------------------------------


def _check(
    stack: Stack,
    mode: SoakMode,
    plan: FaultPlan,
    timeline: Timeline,
    chaos: Chaos,
    *,
    ready_at: datetime,
    stopped_at: datetime,
) -> Findings:
    findings = Findings()
    locations = [loc for loc in stack.config.locations if loc.active]
    ttl = timedelta(seconds=float(stack.env["FLUXION_LEASE_TTL_SECONDS"]))
    with stack.db.connect() as conn:
        cutoffs = check_data.sales_cutoffs(conn, locations)
        check_ledger.check_caught_up(findings, conn, locations, since=timeline.operator_at)
        check_data.check_sales(
            findings, conn, stack.sim_control, locations,
            first_day=timeline.first_data_day, cutoffs=cutoffs,
        )  # fmt: skip
        check_data.check_inventory(findings, conn, stack.sim_control, locations)
        check_data.check_coverage(
            findings, conn, locations, first_day=timeline.first_data_day, cutoffs=cutoffs
        )
        check_ledger.check_runs(findings, conn)
        check_ledger.check_leases(findings, conn)
        check_ledger.check_fires(findings, conn, started_at=ready_at, last_due=stopped_at)
        check_ledger.check_overlap(findings, conn, ttl=ttl)
        check_ledger.check_bursts(findings, conn, stack.api.bursts)
        check_ledger.check_alerts(findings, conn, plan.outages, grace=3 * mode.period)
    injected = Counter(stack.sim_control.fault_counts()) + chaos.injected
    required = [k.value for k in KlkKind] + [a.value for a in ActionKind]
    check_ledger.check_faults(findings, injected=injected, required=required)
    return findings


def _summarize(
    stack: Stack,
    *,
    mode: SoakMode,
    seed: int,
    ready_at: datetime,
    stopped_at: datetime,
    findings: Findings,
    chaos: Chaos,
) -> Summary:
    with stack.db.connect() as conn:
        fire_counts: dict[str, int] = {
            str(outcome): int(n)
            for outcome, n in conn.execute(
                select(fires.c.outcome, func.count()).group_by(fires.c.outcome)
            )
        }
        run_counts = conn.execute(
            select(runs.c.job, runs.c.status, func.count()).group_by(runs.c.job, runs.c.status)
        ).all()
        commit_failures = conn.execute(
            select(func.count()).where(run_items.c.error_message.contains(COMMIT_FAULT_MESSAGE))
        ).scalar_one()
    return Summary(
        mode=mode,
        seed=seed,
        started=stack.clock.start,
        ready_at=ready_at,
        stopped_at=stopped_at,
        fires={str(k): int(v) for k, v in fire_counts.items()},
        runs={(str(j), str(s)): int(n) for j, s, n in run_counts},
        klk_faults=stack.sim_control.fault_counts(),
        actions=dict(chaos.injected),
        missed_actions=list(chaos.missed),
        commit_failures_seen=int(commit_failures),
        findings=findings,
        workdir=stack.workdir,
    )
