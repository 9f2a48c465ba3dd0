"""The soak's two modes and the simulated timeline each one follows (pure: no I/O, no clock).

    short   CI, on every change: 1 business day under faults, 5 locations, hourly schedules
    long    release checks: 30 business days under faults, 20 locations, the default schedules

Every soak starts on Monday 2026-01-05 at 05:40 in Caracas. The first scheduled sales run of a
location never synced reads from local midnight of *yesterday* (SPEC §4.8), so the data checked
starts on Sunday. Timeline (local time):

    05:40 day 1          the processes start on a stopped clock, which runs once all answer
    06:00 day 1          faults begin (KLK faults by simulated-time windows, process faults)
    19:00 day N          faults end: the simulator's faults are cleared, no more kills
    reconcile, day N+1   the sales-reconcile schedule re-reads the previous two days
    +15 min              the operator's steps: a reconcile of the whole period, gap recovery, and
                         a sales and an inventory sync of every location
    then                 both services stopped once those runs ended; then the invariants
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

CARACAS = ZoneInfo("America/Caracas")
FIRST_DAY = date(2026, 1, 5)  # a Monday
CLOCK_START = time(5, 40)  # the processes start on a stopped clock; it runs once all answer
FAULTS_FROM = time(6, 0)
FAULTS_UNTIL = time(19, 0)
OPERATOR_DELAY = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    job: str
    cron: str


@dataclass(frozen=True, slots=True)
class SoakMode:
    """How big and how fast one soak is. ``speed`` is simulated seconds per real second."""

    name: str
    days: int
    locations: int
    skus: int
    lines_per_day: int
    speed: float
    schedules: tuple[ScheduleSpec, ...]
    reconcile_at: time
    extra_fault_rate: float  # per day and kind, beyond the one of each kind every soak has
    period: timedelta  # of the inventory and sales schedules

    def timeline(self) -> Timeline:
        return Timeline.of(self)


def _schedules(inventory: str, sales: str, reconcile: time) -> tuple[ScheduleSpec, ...]:
    return (
        ScheduleSpec("inventory", "inventory", inventory),
        ScheduleSpec("sales", "sales", sales),
        ScheduleSpec("sales-reconcile", "reconcile", f"{reconcile.minute} {reconcile.hour} * * *"),
    )


# Hourly schedules and a 00:10 reconcile keep the short mode's ~70 worker processes within a few
# minutes of a loaded 2-core machine; the long mode keeps the product's defaults (SPEC §4.11).
SHORT = SoakMode(
    name="short",
    days=1,
    locations=5,
    skus=300,
    lines_per_day=240,
    speed=540.0,
    schedules=_schedules("0 * * * *", "5 * * * *", time(0, 10)),
    reconcile_at=time(0, 10),
    extra_fault_rate=0.0,
    period=timedelta(hours=1),
)
LONG = SoakMode(
    name="long",
    days=30,
    locations=20,
    skus=2000,
    lines_per_day=800,
    speed=300.0,
    schedules=_schedules("0,30 * * * *", "5,35 * * * *", time(3, 0)),
    reconcile_at=time(3, 0),
    extra_fault_rate=0.25,
    period=timedelta(minutes=30),
)
MODES = {mode.name: mode for mode in (SHORT, LONG)}


def local(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=CARACAS)


@dataclass(frozen=True, slots=True)
class Timeline:
    """The simulated instants a soak moves through (see the module docstring)."""

    clock_start: datetime
    faults_from: datetime
    faults_until: datetime
    reconcile_fire: datetime
    operator_at: datetime
    first_data_day: date
    last_fault_day: date

    @classmethod
    def of(cls, mode: SoakMode) -> Timeline:
        last = FIRST_DAY + timedelta(days=mode.days - 1)
        reconcile_day = last + timedelta(days=1)
        reconcile = local(reconcile_day, mode.reconcile_at)
        return cls(
            clock_start=local(FIRST_DAY, CLOCK_START),
            faults_from=local(FIRST_DAY, FAULTS_FROM),
            faults_until=local(last, FAULTS_UNTIL),
            reconcile_fire=reconcile,
            operator_at=reconcile + OPERATOR_DELAY,
            first_data_day=FIRST_DAY - timedelta(days=1),
            last_fault_day=last,
        )

    @property
    def fault_days(self) -> list[date]:
        days, day = [], self.faults_from.date()
        while day <= self.last_fault_day:
            days.append(day)
            day += timedelta(days=1)
        return days

    @property
    def reconcile_days(self) -> int:
        """Whole days the operator's final reconcile re-reads: first data day to the last."""
        return (self.operator_at.date() - self.first_data_day).days
