"""Schedules as data (SPEC §4.11) and the decisions about their fires (SPEC §4.2, §4 outcomes).

Pure: no clock reads, no I/O. The embedded scheduler, the API (EventBridge fires) and the CLI
(crontab and manual fires) all decide with ``decide_fire`` and ``plan_fires``, so a fire gets the
same answer whoever delivers it.

Fire rules, in the order they are applied to one scheduled time:

1. A manual fire (an operator asked) always starts.
2. A disabled schedule's fire is ``skipped_disabled``.
3. A fire outside the schedule's active hours is ``skipped_inactive_hours``.
4. A fire older than the schedule's maximum event age (default one hour) is ``missed``.
5. Otherwise it starts, through the same submission as an API call, with the fire
   (``fire:{name}:{scheduled UTC ISO}``) as the idempotency key.

Catch-up, when several fire times are due at once (after downtime): ``latest`` (the default)
starts only the latest startable time and records the older ones ``missed`` (inventory needs
only the newest snapshot; a sales run reads from each location's watermark, so one run covers the
whole missed time); ``all`` starts each one still within the maximum event age; ``none`` starts
only a fire that is on time (within a minute) and records the rest ``missed``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

from fluxion_etl.domain import cron
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import FireOutcome, Job, Trigger
from fluxion_etl.errors import BadInputError, ScheduleChangeRefusedError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TIMEZONE = "America/Caracas"
CatchUp = Literal["latest", "all", "none"]
SchedulerMode = Literal["embedded", "external"]
ON_TIME = timedelta(minutes=1)  # catch_up = "none": how late a fire may start and still count
MAX_LOOKBACK = timedelta(days=7)  # how far back due fire times are enumerated after downtime


class FireSource(StrEnum):
    """Who delivered a fire (``fires.source``)."""

    EMBEDDED = "embedded"  # this service's scheduler loop
    EXTERNAL = "external"  # EventBridge through the API, or a crontab line through the CLI
    MANUAL = "manual"  # an operator: ``schedules trigger`` or the API's trigger route


@dataclass(frozen=True, slots=True)
class ActiveHours:
    """Local hours in which a schedule may fire, both ends inclusive (07:00-21:00 fires at 21:00).

    ``end`` before ``start`` spans midnight (22:00-02:00); such a stretch belongs to the weekday
    on which it starts.
    """

    start: time
    end: time
    weekdays: tuple[str, ...] = WEEKDAYS

    def __post_init__(self) -> None:
        unknown = [day for day in self.weekdays if day not in WEEKDAYS]
        if unknown or not self.weekdays:
            raise BadInputError("active_hours.weekdays", f"{unknown or 'none'}: use mon..sun")
        ordered = tuple(day for day in WEEKDAYS if day in self.weekdays)
        object.__setattr__(self, "weekdays", ordered)

    def contains(self, local: datetime) -> bool:
        """Whether the local wall-clock time ``local`` is inside these hours."""
        clock, day = local.time().replace(tzinfo=None), WEEKDAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.weekdays and self.start <= clock <= self.end
        previous_day = WEEKDAYS[(local.weekday() - 1) % 7]
        return (day in self.weekdays and clock >= self.start) or (
            previous_day in self.weekdays and clock <= self.end
        )

    def describe(self) -> str:
        days = "" if self.weekdays == WEEKDAYS else f" {','.join(self.weekdays)}"
        return f"{self.start:%H:%M}-{self.end:%H:%M}{days}"

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "weekdays": list(self.weekdays),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActiveHours:
        return cls(
            start=time.fromisoformat(data["start"]),
            end=time.fromisoformat(data["end"]),
            weekdays=tuple(data.get("weekdays") or WEEKDAYS),
        )

    @classmethod
    def parse(cls, spec: str, weekdays: tuple[str, ...] = WEEKDAYS) -> ActiveHours:
        """``"07:00-21:00"`` (CLI and API input)."""
        start, sep, end = spec.partition("-")
        try:
            if not sep:
                raise ValueError(spec)
            return cls(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()), weekdays)
        except ValueError:
            raise BadInputError(
                "active_hours", f"{spec!r}: use HH:MM-HH:MM, e.g. 07:00-21:00"
            ) from None


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """One schedule. Constructing one validates its cron expression and time zone."""

    name: str
    job: Job
    cron: str
    timezone: str = DEFAULT_TIMEZONE
    enabled: bool = True
    locations: tuple[str, ...] | None = None  # None: every active location that has the job
    active_hours: ActiveHours | None = None
    retry_attempts: int = 2
    max_event_age_seconds: int = 3600
    catch_up: CatchUp = "latest"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cron", cron.validate_cron(self.cron))
        cron.zone(self.timezone)
        if self.catch_up not in ("latest", "all", "none"):
            raise BadInputError("catch_up", f"{self.catch_up!r}: use latest, all or none")

    @property
    def max_event_age(self) -> timedelta:
        return timedelta(seconds=self.max_event_age_seconds)

    def is_active_at(self, instant: datetime) -> bool:
        """Whether a fire at ``instant`` is inside the active hours (always, without a limit)."""
        if self.active_hours is None:
            return True
        return self.active_hours.contains(instant.astimezone(cron.zone(self.timezone)))

    def to_json(self) -> dict[str, Any]:
        """A plain dict (API answers, ``--json``, the seed hash)."""
        return {
            "name": self.name,
            "job": self.job.value,
            "cron": self.cron,
            "timezone": self.timezone,
            "enabled": self.enabled,
            "locations": None if self.locations is None else list(self.locations),
            "active_hours": None if self.active_hours is None else self.active_hours.to_json(),
            "retry_attempts": self.retry_attempts,
            "max_event_age_seconds": self.max_event_age_seconds,
            "catch_up": self.catch_up,
        }

    def seed_hash(self) -> str:
        """A hash of the definition, to notice when the configuration file changed it."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


DEFAULT_SCHEDULES: tuple[ScheduleDef, ...] = (
    ScheduleDef("inventory", Job.INVENTORY, "0,30 * * * *"),
    ScheduleDef("sales", Job.SALES, "5,35 * * * *"),
    ScheduleDef("sales-reconcile", Job.RECONCILE, "0 3 * * *"),
)


def with_defaults(configured: tuple[ScheduleDef, ...]) -> tuple[ScheduleDef, ...]:
    """The defaults, each replaced by a configured schedule of the same name, then the others."""
    by_name = {s.name: s for s in configured}
    merged = [by_name.pop(d.name, d) for d in DEFAULT_SCHEDULES]
    return (*merged, *by_name.values())


# --- fires --------------------------------------------------------------------------------------


def fire_key(schedule_name: str, scheduled_for: datetime) -> str:
    """The idempotency key of one fire: (schedule, scheduled time in UTC), SPEC §4.2."""
    if scheduled_for.tzinfo is None:
        raise ValueError(f"naive scheduled time {scheduled_for!r}: fires are identified in UTC")
    return f"fire:{schedule_name}:{scheduled_for.astimezone(UTC).isoformat()}"


FIRE_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of our clock a delivered fire's scheduled time may be (the sender's clock)."""


def fire_time_problem(
    schedule: ScheduleDef, scheduled_for: datetime, now: datetime, *, on_cron: bool = True
) -> str | None:
    """Why a fire cannot be this schedule's, or None when it can: its time must not be ahead of
    now and (``on_cron``) must be one of the schedule's fire times. A fire is recorded once per
    (schedule, time): a future one would take the key of the real fire, then answered
    ``duplicate``, and a made-up time starts a run no schedule asked for.

    EventBridge's fires are not held to the stored cron (``on_cron=False``): during a deploy, or
    after a schedule's row stopped following the configuration, its cron may differ from ours,
    and a correct fire must never be refused (SPEC §6)."""
    if scheduled_for > now + FIRE_CLOCK_SKEW:
        return (
            f"{_utc_text(scheduled_for)} is in the future (now {_utc_text(now)}): a fire names "
            "the time it was due"
        )
    if not on_cron:
        return None
    latest = cron.previous_fire(schedule.cron, schedule.timezone, scheduled_for)
    if latest != scheduled_for:
        return (
            f"{_utc_text(scheduled_for)} is not a fire time of schedule {schedule.name} "
            f"({schedule.cron} in {schedule.timezone}); the latest before it is {_utc_text(latest)}"
        )
    return None


def _utc_text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def decide_fire(
    schedule: ScheduleDef, scheduled_for: datetime, now: datetime, mode: FireSource
) -> FireOutcome | None:
    """The outcome of a fire that must not start, or None when it starts (module docstring)."""
    if mode is FireSource.MANUAL:
        return None
    if not schedule.enabled:
        return FireOutcome.SKIPPED_DISABLED
    if not schedule.is_active_at(scheduled_for):
        return FireOutcome.SKIPPED_INACTIVE_HOURS
    if now - scheduled_for > schedule.max_event_age:
        return FireOutcome.MISSED
    return None


def due_fires(schedule: ScheduleDef, last_checked: datetime, now: datetime) -> list[datetime]:
    """Fire times (UTC) in ``(last_checked, now]``, at most ``MAX_LOOKBACK`` back from ``now``."""
    start = max(last_checked, now - MAX_LOOKBACK)
    return list(cron.fires_between(schedule.cron, schedule.timezone, start, now))


def upcoming_fires(schedule: ScheduleDef, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times that would start (inside the active hours), UTC."""
    out: list[datetime] = []
    times = cron.fires_after(schedule.cron, schedule.timezone, after)
    for _ in range(count * 2000):  # bounded: active hours that never match a fire time end here
        instant = next(times)
        if schedule.is_active_at(instant):
            out.append(instant)
            if len(out) == count:
                break
    return out


@dataclass(frozen=True, slots=True)
class PlannedFire:
    """One due fire time and what to do with it: start (``outcome`` None) or record ``outcome``."""

    scheduled_for: datetime
    outcome: FireOutcome | None
    detail: str | None = None


def plan_fires(
    schedule: ScheduleDef, due: list[datetime], now: datetime, mode: FireSource
) -> list[PlannedFire]:
    """Decide every due fire time of one schedule, applying its catch-up policy."""
    planned = [PlannedFire(t, decide_fire(schedule, t, now, mode), None) for t in due]
    startable = [p for p in planned if p.outcome is None]
    if schedule.catch_up == "all" or not startable:
        return [_explained(p, schedule, now) for p in planned]
    if schedule.catch_up == "latest":
        latest = startable[-1].scheduled_for
        keep = {latest}
        reason = f"superseded by the fire at {latest.isoformat()} (catch_up = latest)"
    else:
        keep = {p.scheduled_for for p in startable if now - p.scheduled_for <= ON_TIME}
        reason = "not on time and catch_up = none"
    return [
        _explained(p, schedule, now)
        if p.outcome is not None or p.scheduled_for in keep
        else replace(p, outcome=FireOutcome.MISSED, detail=reason)
        for p in planned
    ]


def _explained(planned: PlannedFire, schedule: ScheduleDef, now: datetime) -> PlannedFire:
    return replace(planned, detail=outcome_detail(schedule, planned, now))


def outcome_detail(schedule: ScheduleDef, planned: PlannedFire, now: datetime) -> str | None:
    """Why a fire was not started, in words for ``fires list`` and the API answer."""
    if planned.outcome is FireOutcome.SKIPPED_DISABLED:
        return "the schedule is disabled"
    if planned.outcome is FireOutcome.SKIPPED_INACTIVE_HOURS:
        hours = schedule.active_hours.describe() if schedule.active_hours else ""
        return f"outside the active hours {hours} ({schedule.timezone})"
    if planned.outcome is FireOutcome.MISSED:
        late = int((now - planned.scheduled_for).total_seconds())
        return f"{late} s late, over the maximum event age of {schedule.max_event_age_seconds} s"
    return None


def fire_request(schedule: ScheduleDef, scheduled_for: datetime) -> RunRequest:
    """The run a started fire submits: trigger ``schedule``, the fire as its idempotency key."""
    return RunRequest(
        job=schedule.job,
        trigger=Trigger.SCHEDULE,
        locations=schedule.locations,
        requested_by=f"schedule:{schedule.name}",
        idempotency_key=fire_key(schedule.name, scheduled_for),
        schedule_name=schedule.name,
        scheduled_for=scheduled_for.astimezone(UTC),
    )


def manual_request(schedule: ScheduleDef, now: datetime, requested_by: str) -> RunRequest:
    """An operator's ``trigger``: the schedule's job and scope, trigger ``cli``, a new run."""
    return RunRequest(
        job=schedule.job,
        trigger=Trigger.CLI,
        locations=schedule.locations,
        requested_by=requested_by,
        schedule_name=schedule.name,
        scheduled_for=now.astimezone(UTC),
    )


REDEPLOY_COMMAND = "cd deploy/aws && cdk deploy"
DEPLOYED_FIELDS = ("cron", "timezone")  # what EventBridge holds; the rest is answered at fire time


def changed_fields(old: ScheduleDef, new: ScheduleDef) -> tuple[str, ...]:
    before, after = old.to_json(), new.to_json()
    return tuple(name for name in after if before[name] != after[name])


def check_change(old: ScheduleDef, new: ScheduleDef, mode: SchedulerMode) -> None:
    """Refuse what a run-time change cannot do in this scheduler mode (SPEC §4.11).

    With EventBridge firing (``external``), the cron expression and zone are deployed with the CDK
    app: changing them in the database alone would make the two disagree.
    """
    deployed = [name for name in changed_fields(old, new) if name in DEPLOYED_FIELDS]
    if mode == "external" and deployed:
        raise ScheduleChangeRefusedError(
            old.name,
            f"{' and '.join(deployed)} cannot change at run time with FLUXION_SCHEDULER=external "
            "(EventBridge holds them): change the schedule in the configuration file and "
            f"redeploy with `{REDEPLOY_COMMAND}`; enable/disable and active hours can change now",
        )
