"""Sales windows in store-local time (SPEC §4.8). Pure functions: no I/O, no clock reads.

Every KLK sales call names the location's warehouse and stays within one local day, so a window
that crosses local midnight is split. Windows are half-open ``[start, end)`` in UTC; ``day``,
``start_time`` and ``end_time`` are what the KLK call sends (``None`` = from/to the day's edge).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fluxion_etl.domain.records import OpeningHours


@dataclass(frozen=True, slots=True)
class SalesWindow:
    day: date  # local business day
    start: datetime  # UTC-aware, inclusive
    end: datetime  # UTC-aware, exclusive
    start_time: time | None  # local hora_desde, None from the start of the day
    end_time: time | None  # local hora_hasta, None to the end of the day

    @property
    def whole_day(self) -> bool:
        return self.start_time is None and self.end_time is None

    def describe(self) -> dict[str, str]:
        return {
            "day": self.day.isoformat(),
            "from": self.start_time.isoformat() if self.start_time else "00:00:00",
            "to": self.end_time.isoformat() if self.end_time else "24:00:00",
        }


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which local ``day`` starts (first valid instant)."""
    naive = datetime.combine(day, time(0, 0))
    return naive.replace(tzinfo=zone).astimezone(UTC)


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _floor_second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def split_by_local_day(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[SalesWindow]:
    """Cut ``[start, end)`` at local midnights into windows of one local day each."""
    start, end = _floor_second(start), _floor_second(end)
    cursor = start
    while cursor < end:
        day = local_date(cursor, zone)
        day_start, day_end = local_day_bounds(day, zone)
        piece_end = min(end, day_end)
        start_time = None if cursor == day_start else cursor.astimezone(zone).time()
        end_time = None if piece_end == day_end else piece_end.astimezone(zone).time()
        yield SalesWindow(day, cursor, piece_end, start_time, end_time)
        cursor = piece_end


def whole_day_window(day: date, zone: ZoneInfo) -> SalesWindow:
    start, end = local_day_bounds(day, zone)
    return SalesWindow(day, start, end, None, None)


def scheduled_windows(
    *, watermark: datetime | None, now: datetime, zone: ZoneInfo, overlap: timedelta
) -> list[SalesWindow]:
    """The windows of a scheduled sales run: from watermark − overlap (or local midnight of
    yesterday for a location never synced) up to now, split per local day."""
    if watermark is None:
        start = local_midnight(local_date(now, zone) - timedelta(days=1), zone)
    else:
        start = min(watermark, now) - overlap
    return list(split_by_local_day(start, now, zone))


def backfill_days(date_from: date, date_to: date) -> list[date]:
    """Local dates from ``date_from`` to ``date_to`` inclusive."""
    return [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]


def day_windows(day: date, *, now: datetime, zone: ZoneInfo) -> SalesWindow | None:
    """A backfill/reconcile window for one local day, cut at ``now`` today; None in the future."""
    start, end = local_day_bounds(day, zone)
    if start >= now:
        return None
    if end <= now:
        return whole_day_window(day, zone)
    return next(split_by_local_day(start, now, zone))


def opening_intervals(
    hours: OpeningHours, start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Opening-hours stretches (UTC) that intersect ``[start, end)``."""
    out: list[tuple[datetime, datetime]] = []
    day = local_date(start, zone) - timedelta(days=1)
    while local_midnight(day, zone) < end:
        for span in hours.spans_on(day):
            open_at = datetime.combine(day, span.opens).replace(tzinfo=zone).astimezone(UTC)
            close_day = day + timedelta(days=1) if span.ends_at_midnight else day
            close_at = datetime.combine(close_day, span.closes).replace(tzinfo=zone)
            lo, hi = max(open_at, start), min(close_at.astimezone(UTC), end)
            if lo < hi:
                out.append((lo, hi))
        day += timedelta(days=1)
    return out


def overlaps_opening_hours(
    hours: OpeningHours, start: datetime, end: datetime, zone: ZoneInfo
) -> bool:
    return bool(opening_intervals(hours, start, end, zone))
