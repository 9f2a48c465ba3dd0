"""The fault schedule of one soak, drawn from a printed seed (pure: the same seed, the same plan).

Two families, both placed on the simulated clock between the timeline's ``faults_from`` and
``faults_until``:

- **KLK faults** (every kind the simulator has): compact fault specs with ``from``/``until`` in
  simulated time, all posted to the simulator at the start (``POST /_sim/faults``), so they take
  effect at their simulated instants however late the soak itself runs.
- **Actions** the soak performs itself at their instants: ``kill -9`` of workers and of a service
  process, a PostgreSQL restart, failed commits, and bursts of duplicate and concurrent triggers.

Every kind of both families appears at least once (the soak fails otherwise: it would prove
nothing); the long mode adds more at random, per day and kind, at ``extra_fault_rate``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from fluxion_etl.sim.topology import build_locations
from fluxion_etl.soak.modes import FAULTS_FROM, FAULTS_UNTIL, SoakMode, Timeline, local


class KlkKind(StrEnum):
    """The simulator's fault kinds (``sim.faults.FaultKind``), each injected at least once."""

    LATENCY = "latency"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HANG = "hang"
    ERROR_BODY = "error_body"
    TRUNCATED_JSON = "truncated_json"
    COUNT_MISMATCH = "count_mismatch"
    DUPLICATE_LINES = "duplicate_lines"
    VOID_LINES = "void_lines"
    EMPTY_SALES = "empty_sales"


class ActionKind(StrEnum):
    KILL_WORKER = "kill_worker"
    KILL_WORKER_IN_RECONCILE = "kill_worker_in_reconcile"
    KILL_SERVE = "kill_serve"
    KILL_SERVE_QUEUED = "kill_serve_between_queue_and_launch"
    PG_RESTART = "pg_restart"
    FAILED_COMMIT = "failed_commit"
    BACKEND_KILLED_MID_LOAD = "backend_killed_mid_load"
    DUPLICATE_KEY_BURST = "duplicate_key_burst"
    CONCURRENT_BURST = "concurrent_trigger_burst"
    DUPLICATE_FIRE_BURST = "duplicate_fire_burst"


# KLK outages that make every run of the location fail while they last: alerts must open for
# them and clear afterwards.
OUTAGES = frozenset({KlkKind.HTTP_500, KlkKind.HTTP_503, KlkKind.ERROR_BODY})
BASE_ACTIONS = (*ActionKind, ActionKind.KILL_WORKER)  # two random worker kills in every soak


@dataclass(frozen=True, slots=True)
class KlkFault:
    """One simulator fault with its simulated-time window; ``location`` None means every one."""

    kind: KlkKind
    spec: str
    since: datetime
    until: datetime
    location: str | None


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    kind: ActionKind
    serve: int  # which service process (kill_serve, and where bursts start)
    location: str


@dataclass(frozen=True, slots=True)
class FaultPlan:
    seed: int
    klk: tuple[KlkFault, ...]
    actions: tuple[Action, ...]

    @property
    def outages(self) -> list[KlkFault]:
        return [f for f in self.klk if f.kind in OUTAGES]

    def klk_specs(self) -> str:
        return ";".join(fault.spec for fault in self.klk)


def draw_plan(mode: SoakMode, seed: int, *, hang_seconds: float) -> FaultPlan:
    """The whole schedule for ``mode`` from ``seed`` (module docstring)."""
    rng = random.Random(f"fluxion-soak:{seed}")
    timeline = mode.timeline()
    days = timeline.fault_days
    locations = location_ids(mode.locations)
    klk_by_day: dict[date, list[KlkKind]] = {day: [] for day in days}
    actions_by_day: dict[date, list[ActionKind]] = {day: [] for day in days}
    for kind in KlkKind:
        klk_by_day[rng.choice(days)].append(kind)
    for action in BASE_ACTIONS:
        actions_by_day[rng.choice(days)].append(action)
    for day in days:
        klk_by_day[day] += [k for k in KlkKind if rng.random() < mode.extra_fault_rate]
        actions_by_day[day] += [a for a in ActionKind if rng.random() < mode.extra_fault_rate]
    klk = [
        fault
        for day in days
        for fault in _day_faults(klk_by_day[day], rng, day, locations, hang_seconds)
    ]
    actions = [
        action for day in days for action in _place(actions_by_day[day], rng, day, locations)
    ]
    return FaultPlan(
        seed=seed,
        klk=tuple(sorted(klk, key=lambda f: f.since)),
        actions=tuple(sorted(actions, key=lambda a: a.at)),
    )


def location_ids(count: int) -> list[str]:
    """The simulated stores (locations with sales) among the first ``count`` locations."""
    return [loc.id for loc in build_locations(count) if loc.sells]


def _window(rng: random.Random, day: date, minutes: tuple[int, int]) -> tuple[datetime, datetime]:
    """A window of ``minutes`` (drawn between the bounds) within the day's fault hours."""
    length = timedelta(minutes=rng.randint(*minutes))
    first, last = local(day, FAULTS_FROM), local(day, FAULTS_UNTIL) - length
    start = first + timedelta(minutes=rng.randint(0, int((last - first).total_seconds() // 60)))
    return start, start + length


@dataclass(frozen=True, slots=True)
class _Shape:
    """How a kind is injected: its spec (``{call}``, ``{loc}``, ``{hang}`` filled in), the calls
    it may hit, and either a time window (outages: every call in it fails) or none (a count of
    injections from a random start to the end of the day's faults, so a run that starts late on a
    loaded machine still meets it)."""

    body: str
    calls: tuple[str, ...]
    window: tuple[int, int] | None = None


SHAPES = {
    KlkKind.LATENCY: _Shape("*@*:latency=0.3:p=0.5:n=12", ("*",)),
    KlkKind.HTTP_500: _Shape("{call}@{loc}:http_500", ("sales",), (150, 180)),
    KlkKind.HTTP_503: _Shape("{call}@{loc}:http_503", ("catalogue",), (150, 180)),
    KlkKind.ERROR_BODY: _Shape("{call}@{loc}:error_body", ("sales", "catalogue"), (150, 180)),
    KlkKind.HANG: _Shape("{call}@{loc}:hang={hang}:n=2", ("sales", "catalogue")),
    KlkKind.TRUNCATED_JSON: _Shape("{call}@{loc}:truncated_json=0.6:n=2", ("sales", "catalogue")),
    KlkKind.COUNT_MISMATCH: _Shape("{call}@{loc}:count_mismatch=2:n=2", ("sales", "catalogue")),
    KlkKind.DUPLICATE_LINES: _Shape("*@*:duplicate_lines=3:n=6", ("*",)),
    KlkKind.VOID_LINES: _Shape("{call}@{loc}:void_lines=1:n=2", ("sales",)),
    KlkKind.EMPTY_SALES: _Shape("{call}@{loc}:empty_sales:n=2", ("sales",)),
}


def _day_faults(
    kinds: list[KlkKind], rng: random.Random, day: date, locations: list[str], hang: float
) -> list[KlkFault]:
    """The day's KLK faults. Outages of one day hit different locations: the simulator answers a
    call with the first of several due outages only, and each must be seen."""
    outages = [k for k in kinds if k in OUTAGES]
    spread = rng.sample(locations, len(locations))
    at = {id(kind): spread[i % len(spread)] for i, kind in enumerate(outages)}
    return [_klk_fault(k, rng, day, at.get(id(k)) or rng.choice(locations), hang) for k in kinds]


def _klk_fault(kind: KlkKind, rng: random.Random, day: date, loc: str, hang: float) -> KlkFault:
    shape = SHAPES[kind]
    body = shape.body.format(call=rng.choice(shape.calls), loc=loc, hang=f"{hang:g}")
    if shape.window is not None:
        since, until = _window(rng, day, shape.window)
    else:
        since, until = _window(rng, day, (240, 600))[0], local(day, FAULTS_UNTIL)
    spec = f"{body}:from={_naive(since)}:until={_naive(until)}"
    return KlkFault(kind, spec, since, until, None if "@*:" in body else loc)


def _place(
    kinds: list[ActionKind], rng: random.Random, day: date, locations: list[str]
) -> list[Action]:
    """Spread the day's actions over its fault hours: one slot each, in random order, so no two
    start closer than a fraction of a slot (each may take real seconds to carry out)."""
    if not kinds:
        return []
    order = list(kinds)
    rng.shuffle(order)
    first, last = local(day, FAULTS_FROM), local(day, FAULTS_UNTIL) - timedelta(minutes=40)
    slot = (last - first) / len(order)
    return [
        Action(
            at=first + slot * index + slot * rng.uniform(0.1, 0.6),
            kind=kind,
            serve=rng.randrange(2),
            location=rng.choice(locations),
        )
        for index, kind in enumerate(order)
    ]


def _naive(instant: datetime) -> str:
    """Caracas wall time without offset: the simulator reads such times as Caracas."""
    return instant.replace(tzinfo=None).isoformat(timespec="seconds")


def describe(plan: FaultPlan, timeline: Timeline) -> list[str]:
    """The plan as printed at the start, so a failing seed can be read and replayed."""
    lines = [f"fault plan (seed {plan.seed}):"]
    lines += [
        f"  klk   {f.since:%a %H:%M}-{f.until:%H:%M}  {f.kind.value:<16} {f.spec}" for f in plan.klk
    ]
    lines += [
        f"  act   {a.at:%a %H:%M}        {a.kind.value:<36} serve {a.serve} {a.location}"
        for a in plan.actions
    ]
    lines.append(
        f"  faults end {timeline.faults_until:%a %H:%M}; reconcile fires "
        f"{timeline.reconcile_fire:%a %H:%M}; operator steps at {timeline.operator_at:%a %H:%M}"
    )
    return lines
