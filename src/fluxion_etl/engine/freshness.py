"""Is a location's data fresh? (SPEC §4.12). Pure functions: the caller passes the clock's ``now``.

A location's data for a job is stale when its last success is older than two schedule periods plus
the job's deadline (the *threshold*: two fires may fail or be late before anyone is told). It is
judged only while the location is open, and once after closing, so that the day's last sales are in:

- open, and open for at least a threshold: stale when ``last_success < now - threshold``;
- in the first threshold after opening: judged against the previous closing (the night's data must
  have been complete, nothing more can be asked yet);
- closed, less than a threshold after closing: the open-hours rule keeps running, so the verdict
  slides smoothly into the check after closing;
- closed, later: stale when nothing succeeded after closing (the one check after closing); that
  verdict holds until the next opening.

A location that never succeeded is stale; one not open at all in the past week is never judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from fluxion_etl.domain.records import Location
from fluxion_etl.domain.states import Job
from fluxion_etl.domain.windows import opening_intervals

DEFAULT_PERIOD = timedelta(minutes=30)
LOOKBACK = timedelta(days=8)

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Freshness:
    location_id: str
    job: Job
    last_success_at: datetime | None
    age_seconds: float | None
    threshold_seconds: float
    required_since: datetime | None  # the oldest last success that still counts as fresh now
    open_now: bool
    stale: bool


def threshold(period: timedelta, deadline: timedelta) -> timedelta:
    return 2 * period + deadline


def judge(
    location: Location,
    job: Job,
    *,
    last_success_at: datetime | None,
    now: datetime,
    period: timedelta = DEFAULT_PERIOD,
    deadline: timedelta,
) -> Freshness:
    """The verdict for one location and job at ``now``."""
    limit = threshold(period, deadline)
    intervals = merged_opening(location, now - LOOKBACK, now + timedelta(days=1))
    required = required_since(intervals, now, limit)
    stale = last_success_at is None or (required is not None and last_success_at < required)
    return Freshness(
        location_id=location.id,
        job=job,
        last_success_at=last_success_at,
        age_seconds=None if last_success_at is None else (now - last_success_at).total_seconds(),
        threshold_seconds=limit.total_seconds(),
        required_since=required,
        open_now=any(start <= now < end for start, end in intervals),
        stale=stale,
    )


def required_since(intervals: list[Interval], now: datetime, limit: timedelta) -> datetime | None:
    """The instant the last success must not be older than; None when ``now`` is not judged."""
    past = [(start, end) for start, end in intervals if start <= now]
    if not past:
        return None
    start, end = past[-1]
    if now < end:  # open now
        if now - limit >= start:
            return now - limit
        return past[-2][1] if len(past) > 1 else now - limit
    return now - limit if now < end + limit else end


def merged_opening(location: Location, start: datetime, end: datetime) -> list[Interval]:
    """Opening stretches (UTC) in ``[start, end)``, touching stretches joined (a 24 h store is
    one long stretch, not one per day)."""
    merged: list[Interval] = []
    for lo, hi in opening_intervals(location.opening_hours, start, end, location.zone):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def deadlines_from(deadline_seconds: Callable[[str], float]) -> dict[Job, timedelta]:
    """Each job's deadline, from ``Settings.deadline_seconds``."""
    return {job: timedelta(seconds=deadline_seconds(job.value)) for job in Job}


def jobs_of(location: Location) -> tuple[Job, ...]:
    """The jobs whose freshness matters for a location (a distribution centre has no sales)."""
    return (Job.INVENTORY, Job.SALES) if location.has_sales else (Job.INVENTORY,)


def judge_all(
    locations: Iterable[Location],
    last_successes: Mapping[tuple[str, str], datetime | None],
    *,
    now: datetime,
    deadlines: Mapping[Job, timedelta],
    periods: Mapping[Job, timedelta] | None = None,
) -> list[Freshness]:
    """Every active location and each of its jobs; ``last_successes`` is keyed (job, location)."""
    out = []
    for location in locations:
        if not location.active:
            continue
        for job in jobs_of(location):
            out.append(
                judge(
                    location,
                    job,
                    last_success_at=last_successes.get((job.value, location.id)),
                    now=now,
                    period=(periods or {}).get(job, DEFAULT_PERIOD),
                    deadline=deadlines[job],
                )
            )
    return out
