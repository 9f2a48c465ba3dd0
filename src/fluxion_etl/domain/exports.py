"""One schedule definition, exported to the schedulers that can fire it from outside the service.

``to_eventbridge`` is the one converter to EventBridge Scheduler, shared by ``fluxion-etl export
eventbridge`` and the AWS CDK app (deploy/aws); ``to_crontab_line`` writes a crontab line that
calls ``fluxion-etl schedules fire NAME``. Both rebuild the expression from croniter's expanded
fields, so names, ``?`` and steps come out in the target's own syntax, and both refuse with the
reason what the target would read differently:

EventBridge (``cron(minutes hours day-of-month month day-of-week year)``):
  * weekdays are 1-7 with Sunday = 1 (cron: 0-7 with Sunday = 0 or 7);
  * exactly one of day-of-month and day-of-week is ``?``: a cron expression restricting both
    (fires on either) is refused, unless one of them covers every day;
  * day-of-week has no ``/`` step (steps are written out as lists); ``L`` alone in day-of-month
    means the last day in both; one ``d#n`` in day-of-week is kept (``5#2`` → ``6#2``), several
    are refused; ``Ld`` (last weekday of the month) is refused, EventBridge reads ``L`` in
    day-of-week as Saturday;
  * the expression is evaluated in the schedule's zone (EventBridge's time-zone field); in a zone
    with DST, EventBridge skips fire times in the skipped spring hour, where the embedded
    scheduler runs them at the jump (``fluxion_etl.domain.cron``); the export carries a note.

crontab (Vixie cron and cronie): no ``L``, ``#`` or ``?``; the lines are in the machine's zone, so
a schedule in another zone is shifted by the whole hours between them when both zones keep a
fixed offset, with a comment saying so, and refused otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, Literal

from fluxion_etl.domain import cron
from fluxion_etl.domain.cron import LAST, CronFields
from fluxion_etl.domain.schedules import ScheduleDef
from fluxion_etl.errors import InexpressibleError

EVENTBRIDGE = "EventBridge Scheduler"
CRONTAB = "crontab"
EVENTBRIDGE_MAX_EXPRESSION = 256
_DEFAULT_REFERENCE = date(2026, 1, 1)
_FULL = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 6)}


@dataclass(frozen=True, slots=True)
class EventBridgeSchedule:
    """What the CDK app deploys for one schedule (``AWS::Scheduler::Schedule``)."""

    name: str
    expression: str  # e.g. "cron(0,30 * * * ? *)"
    timezone: str  # ScheduleExpressionTimezone
    state: Literal["ENABLED", "DISABLED"]
    job: str
    locations: tuple[str, ...] | None
    retry_attempts: int  # RetryPolicy.MaximumRetryAttempts (0-185)
    max_event_age_seconds: int  # RetryPolicy.MaximumEventAgeInSeconds (60-86400)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "timezone": self.timezone,
            "state": self.state,
            "job": self.job,
            "locations": None if self.locations is None else list(self.locations),
            "retry_attempts": self.retry_attempts,
            "max_event_age_seconds": self.max_event_age_seconds,
            "notes": list(self.notes),
        }


# --- EventBridge -------------------------------------------------------------------------------


def to_eventbridge(schedule: ScheduleDef, *, on: date | None = None) -> EventBridgeSchedule:
    """The EventBridge schedule that fires ``schedule``; InexpressibleError with the reason.

    ``on`` is the date from which the zone's DST note is judged (default: 2026).
    """
    fields = cron.cron_fields(schedule.cron)
    dom, dow = _eventbridge_days(schedule.name, fields)
    expression = "cron({} {} {} {} {} *)".format(
        compress(fields.minutes, "minute", steps=True),
        compress(fields.hours, "hour", steps=True),
        dom,
        compress(fields.months, "month", steps=True),
        dow,
    )
    if len(expression) > EVENTBRIDGE_MAX_EXPRESSION:
        raise InexpressibleError(
            schedule.name,
            EVENTBRIDGE,
            f"the expression is {len(expression)} characters, over EventBridge's "
            f"{EVENTBRIDGE_MAX_EXPRESSION}; use fewer separate values",
        )
    return EventBridgeSchedule(
        name=schedule.name,
        expression=expression,
        timezone=schedule.timezone,
        state="ENABLED" if schedule.enabled else "DISABLED",
        job=schedule.job.value,
        locations=schedule.locations,
        retry_attempts=schedule.retry_attempts,
        max_event_age_seconds=schedule.max_event_age_seconds,
        notes=_dst_note(schedule, on or _DEFAULT_REFERENCE),
    )


def _eventbridge_days(name: str, fields: CronFields) -> tuple[str, str]:
    """(day-of-month, day-of-week) with exactly one ``?``."""
    if fields.day_of_month_restricted and fields.day_of_week_restricted:
        if _covers_every_day(fields):
            return "*", "?"
        raise InexpressibleError(
            name,
            EVENTBRIDGE,
            "both day-of-month and day-of-week are restricted (cron fires on either); "
            "EventBridge accepts only one of them: split it into two schedules",
        )
    if fields.day_of_week_restricted:
        return "?", _eventbridge_weekdays(name, fields)
    return _day_of_month(name, fields, EVENTBRIDGE), "?"


def _covers_every_day(fields: CronFields) -> bool:
    every_dom = fields.days_of_month == tuple(range(1, 32))
    every_dow = fields.days_of_week == tuple(range(7)) and not fields.nth_weekdays
    return every_dom or every_dow


def _day_of_month(name: str, fields: CronFields, target: str) -> str:
    if not fields.last_day_of_month:
        return compress(fields.days_of_month, "dom", steps=True, crontab=target == CRONTAB)
    if fields.days_of_month is not None or target == CRONTAB:
        why = "cron daemons have no L" if target == CRONTAB else "L cannot be part of a list"
        raise InexpressibleError(name, target, f"day-of-month with L: {why}")
    return "L"


def _eventbridge_weekdays(name: str, fields: CronFields) -> str:
    """Cron weekdays (Sunday = 0) as EventBridge's (Sunday = 1), never with a ``/`` step."""
    if not fields.nth_weekdays:
        assert fields.days_of_week is not None
        return compress(tuple(day + 1 for day in fields.days_of_week), "dow", steps=False)
    if len(fields.nth_weekdays) > 1:
        raise InexpressibleError(
            name, EVENTBRIDGE, "several d#n terms: EventBridge accepts one in day-of-week"
        )
    day, occurrence = fields.nth_weekdays[0]
    if occurrence == LAST:
        raise InexpressibleError(
            name,
            EVENTBRIDGE,
            "the last weekday of the month (L in day-of-week) is read differently by "
            "EventBridge (L there means Saturday): name the days of the month instead",
        )
    return f"{day + 1}#{occurrence}"


def _dst_note(schedule: ScheduleDef, on: date) -> tuple[str, ...]:
    if fixed_offset(schedule.timezone, on) is not None:
        return ()
    return (
        f"{schedule.timezone} changes its clocks: EventBridge skips fire times in the skipped "
        "spring hour, where the embedded scheduler runs them at the jump; both fire once in the "
        "repeated autumn hour",
    )


def compress(
    values: tuple[int, ...] | None, field: str, *, steps: bool, crontab: bool = False
) -> str:
    """A field's values as ``*``, a step (``0/5``, crontab ``0-59/5``), or ranges and lists."""
    lo, hi = _FULL[field]
    if field == "dow" and not crontab:
        lo, hi = 1, 7
    if values is None or values == tuple(range(lo, hi + 1)):
        return "*"
    step = _step(values, hi) if steps else None
    if step is not None:
        return f"{values[0]}-{hi}/{step}" if crontab else f"{values[0]}/{step}"
    return ",".join(_runs(values))


def _step(values: tuple[int, ...], hi: int) -> int | None:
    """The step of a progression that runs to the field's end (written as ``start/step``)."""
    if len(values) < 5:
        return None  # short lists read better as lists: "0,30"
    step = values[1] - values[0]
    regular = all(b - a == step for a, b in pairwise(values))
    return step if regular and values[-1] + step > hi else None


def _runs(values: tuple[int, ...]) -> list[str]:
    out: list[str] = []
    start = prev = values[0]
    for value in (*values[1:], None):
        if value is not None and value == prev + 1:
            prev = value
            continue
        run = range(start, prev + 1)
        out.append(f"{start}-{prev}" if len(run) >= 3 else ",".join(map(str, run)))
        if value is not None:
            start = prev = value
    return out


# --- crontab -----------------------------------------------------------------------------------


def to_crontab_line(
    schedule: ScheduleDef,
    machine_zone: str,
    command_prefix: str = "fluxion-etl",
    *,
    on: date | None = None,
) -> str:
    """Comment lines and the crontab line firing ``schedule`` from a machine in ``machine_zone``."""
    fields = cron.cron_fields(schedule.cron)
    if fields.nth_weekdays:
        raise InexpressibleError(schedule.name, CRONTAB, "cron daemons have no d#n or Ld weekdays")
    comments = [f"# {schedule.name}: {schedule.job.value}, {schedule.cron} in {schedule.timezone}"]
    shift = _zone_shift(schedule, machine_zone, on or _DEFAULT_REFERENCE)
    if shift:
        fields = _shifted(schedule.name, fields, shift)
    if schedule.timezone != machine_zone:
        comments.append(f"#   shifted {shift:+d} h to the machine zone {machine_zone}")
    if schedule.active_hours is not None:
        comments.append(
            f"#   active hours {schedule.active_hours.describe()} ({schedule.timezone}) are "
            "applied when the fire is answered"
        )
    when = _crontab_fields(schedule.name, fields)
    line = f"{when} {command_prefix} schedules fire {schedule.name}"
    if not schedule.enabled:
        line = f"# disabled: {line}"
    return "\n".join([*comments, line])


def crontab(
    schedules: tuple[ScheduleDef, ...] | list[ScheduleDef],
    machine_zone: str,
    command_prefix: str = "fluxion-etl",
    *,
    on: date | None = None,
) -> str:
    """A whole crontab for the schedules (``fluxion-etl export crontab``)."""
    header = (
        "# fluxion-etl schedules, generated by `fluxion-etl export crontab`; "
        f"times in the machine zone {machine_zone}.\n"
        "# Each line fires through the same path as the API (the fire is its idempotency key).\n"
        "# Set FLUXION_DATABASE_URL, FLUXION_CONFIG and FLUXION_KLK_BASE_URL above these lines\n"
        "# (cron runs with an almost empty environment) and FLUXION_SCHEDULER=external in the\n"
        "# service, so that only cron fires (a fire delivered twice would still start one run)."
    )
    body = [to_crontab_line(s, machine_zone, command_prefix, on=on) for s in schedules]
    return "\n\n".join([header, *body]) + "\n"


def _crontab_fields(name: str, fields: CronFields) -> str:
    dom = _day_of_month(name, fields, CRONTAB)
    dow = compress(fields.days_of_week, "dow", steps=False, crontab=True)
    both = fields.day_of_month_restricted and fields.day_of_week_restricted
    if both and _covers_every_day(fields):
        dom = dow = "*"  # cron ORs the two day fields: one of them is every day
    return " ".join(
        (
            compress(fields.minutes, "minute", steps=True, crontab=True),
            compress(fields.hours, "hour", steps=True, crontab=True),
            dom,
            compress(fields.months, "month", steps=True, crontab=True),
            dow,
        )
    )


def _zone_shift(schedule: ScheduleDef, machine_zone: str, on: date) -> int:
    """Whole hours to add to the schedule's local times to get the machine's."""
    if schedule.timezone == machine_zone:
        return 0
    ours, theirs = fixed_offset(schedule.timezone, on), fixed_offset(machine_zone, on)
    if ours is None or theirs is None:
        changing = schedule.timezone if ours is None else machine_zone
        raise InexpressibleError(
            schedule.name,
            CRONTAB,
            f"{changing} changes its clocks, so no fixed crontab line in {machine_zone} follows "
            f"{schedule.timezone}; run cron with TZ={schedule.timezone} "
            "(export with --machine-zone) or use the embedded scheduler",
        )
    delta = theirs - ours
    if delta % timedelta(hours=1):
        raise InexpressibleError(
            schedule.name,
            CRONTAB,
            f"{machine_zone} and {schedule.timezone} differ by {delta}, not whole hours",
        )
    return int(delta / timedelta(hours=1))


def _shifted(name: str, fields: CronFields, hours: int) -> CronFields:
    """Move the hours by ``hours``; a day change is followed only by an unrestricted day or a
    weekday list (when every fire time moves to the same neighbouring day)."""
    moved = [h + hours for h in (fields.hours or range(24))]
    days = {-1 if h < 0 else (1 if h > 23 else 0) for h in moved}
    new_hours = tuple(sorted(h % 24 for h in moved))
    other_days = fields.day_of_month_restricted or fields.months is not None
    weekdays = fields.days_of_week
    if days != {0} and (other_days or weekdays is not None):
        if other_days or len(days) > 1:
            raise InexpressibleError(
                name,
                CRONTAB,
                f"the {hours:+d} h shift to the machine zone moves some fire times to another "
                "day, which the day fields cannot follow; run cron in the schedule's zone",
            )
        assert weekdays is not None
        day_shift = days.pop()
        weekdays = tuple(sorted((d + day_shift) % 7 for d in weekdays))
    return CronFields(
        minutes=fields.minutes,
        hours=None if new_hours == tuple(range(24)) else new_hours,
        days_of_month=fields.days_of_month,
        last_day_of_month=fields.last_day_of_month,
        months=fields.months,
        days_of_week=weekdays,
        nth_weekdays=fields.nth_weekdays,
    )


def fixed_offset(zone_name: str, on: date) -> timedelta | None:
    """The zone's UTC offset if it stays the same for two years from ``on``, else None (DST)."""
    tz = cron.zone(zone_name)
    offsets = {
        datetime.combine(on + timedelta(days=d), time(12), tz).utcoffset() for d in range(0, 731, 7)
    }
    return offsets.pop() if len(offsets) == 1 else None
