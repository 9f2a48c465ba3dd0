"""Sales (SPEC §4.8–§4.9): scheduled windows from the watermark, and day-by-day backfill/reconcile.

Every KLK call names the location's sales warehouse and stays within one local day. A location's
windows load, and its coverage and watermark advance, in one transaction; nothing on failure.
Whole-day windows also remove lines KLK no longer returns (voids), unless that is a mass deletion.
Scheduled windows leave undecoded the lines KLK sends exactly as a stored line was loaded from
(their fingerprints match): most of a window is the hour before it, read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.domain.records import KnownLines, Location, SalesBatch
from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase
from fluxion_etl.domain.windows import (
    SalesWindow,
    day_windows,
    local_date,
    overlaps_opening_hours,
    scheduled_windows,
)
from fluxion_etl.engine.fetch import fetch, is_mass_deletion
from fluxion_etl.engine.location import LocationContext
from fluxion_etl.engine.outcome import LocationFailure, LocationResult
from fluxion_etl.store import coverage, held, sales_loader, sync_state
from fluxion_etl.store.schema import sales_lines


def sync_sales_scheduled(ctx: LocationContext) -> LocationResult:
    """From the watermark minus the overlap (or yesterday's local midnight) up to now."""
    result = LocationResult()
    windows = _scheduled_windows(ctx)
    # Only here are lines sent exactly as stored left undecoded (the window's overlap, most of
    # it): backfills and reconciles decode and compare every line of a day.
    batches = [(w, _extract(ctx, w, result, skip_stored=True)) for w in windows]
    ctx.check_deadline()
    with result.timings.measure(ErrorPhase.LOAD), ctx.rt.engine.begin() as conn:
        lines = [line for _, batch in batches for line in batch.lines]
        loaded = sales_loader.load_sales(
            conn,
            location_id=ctx.location.id,
            lines=lines,
            run_id=ctx.run_id,
            now=ctx.rt.clock.now(),
        )
        result.counters += ItemCounters(
            inserted=loaded.inserted, updated=loaded.updated, unchanged=loaded.unchanged
        )
        for window, batch in batches:
            _cover(ctx, conn, window, batch)
        ctx.commit_success(conn, result, watermark=windows[-1].end if windows else None)
    ctx.log.info("sales loaded", ctx.location.id, windows=len(windows), **_fields(result.counters))
    return result


def sync_sales_days(
    ctx: LocationContext, days: list[date], *, skip_covered: bool
) -> LocationResult:
    """Whole local days (backfill and reconcile), one transaction and one lease per day."""
    result = LocationResult()
    read_to_now = False
    for index, day in enumerate(days):
        ctx.check_deadline()
        now = ctx.rt.clock.now()
        window = day_windows(day, now=now, zone=ctx.location.zone)
        if window is None:
            continue
        if skip_covered and _covered(ctx, window):
            ctx.progress("skip", day.isoformat())
            result.windows.append({**window.describe(), "skipped": "already covered"})
            continue
        if index > 0:
            _reacquire(ctx)
        # Today's window is cut at ``now`` (to the second): it reads up to now, so the
        # watermark moves there. Compared with this ``now``, not a later one: KLK takes time.
        reaches_now = window.end >= now.replace(microsecond=0)
        _sync_day(ctx, window, result, reaches_now=reaches_now)
        read_to_now = read_to_now or reaches_now
        ctx.progress("day", day.isoformat())
    with ctx.rt.engine.begin() as conn:
        # Days that end before now make nothing fresh: only a read up to now does (freshness).
        ctx.commit_success(conn, result, fresh=read_to_now)
    ctx.log.info("sales days loaded", ctx.location.id, days=len(days), **_fields(result.counters))
    return result


def reconcile_days(ctx: LocationContext, days: int) -> list[date]:
    """The previous ``days`` complete local days (SPEC §4.9: default the previous 2)."""
    today = local_date(ctx.rt.clock.now(), ctx.location.zone)
    return [today - timedelta(days=n) for n in range(days, 0, -1)]


def _scheduled_windows(ctx: LocationContext) -> list[SalesWindow]:
    with ctx.rt.engine.connect() as conn:
        state = sync_state.get_state(conn, "sales", ctx.location.id)
    now = ctx.rt.clock.now()
    windows = scheduled_windows(
        watermark=state.watermark if state else None,
        now=now,
        zone=ctx.location.zone,
        overlap=timedelta(minutes=ctx.rt.settings.sales_overlap_minutes),
    )
    earliest = now - timedelta(days=ctx.rt.settings.max_range_days)
    if windows and windows[0].start < earliest:
        ctx.log.warning(
            "watermark older than the maximum range; older time is left to gap recovery",
            ctx.location.id,
            watermark=windows[0].start.isoformat(),
        )
        windows = [w for w in windows if w.end > earliest]
    return windows


def _extract(
    ctx: LocationContext, window: SalesWindow, result: LocationResult, *, skip_stored: bool = False
) -> SalesBatch:
    """The window's lines; with ``skip_stored``, those sent exactly as a stored line was loaded
    from are counted (``SalesBatch.kept``) but not decoded, nor loaded again."""
    ctx.check_deadline()
    ctx.progress("extract", window.day.isoformat())
    warehouse = _sales_warehouse(ctx.location)
    seed = sales_loader.fingerprint_seed(warehouse_code=warehouse, zone=ctx.location.zone.key)

    def known() -> KnownLines | None:  # asked for only when the answer has lines
        try:
            with ctx.rt.engine.connect() as conn:
                return sales_loader.known_lines(
                    conn, location_id=ctx.location.id, start=window.start, end=window.end
                )
        except SQLAlchemyError as exc:  # every line is decoded instead
            ctx.log.warning(
                "stored lines unreadable; decoding every line",
                ctx.location.id,
                error=str(exc)[:200],
            )
            return None

    batch = fetch(
        ctx,
        "sales",
        lambda: ctx.rt.klk.sales(
            branch_code=ctx.location.branch_code or "",
            warehouse_code=warehouse,
            day=window.day,
            start=window.start_time,
            end=window.end_time,
            zone=ctx.location.zone,
            seed=seed,
            known=known if skip_stored else None,
        ),
        result,
    )
    described: dict[str, Any] = {**window.describe(), "lines": batch.sent}
    if batch.kept:
        described["decoded"] = len(batch.lines)
    result.windows.append(described)
    result.counters += ItemCounters(
        fetched=batch.sent + batch.duplicates_removed,
        duplicates=batch.duplicates_removed,
        unchanged=batch.kept,
    )
    return batch


def _sync_day(
    ctx: LocationContext, window: SalesWindow, result: LocationResult, *, reaches_now: bool
) -> None:
    batch = _extract(ctx, window, result)
    note: _Note | None = None
    with result.timings.measure(ErrorPhase.LOAD), ctx.rt.engine.begin() as conn:
        loaded = sales_loader.load_sales(
            conn,
            location_id=ctx.location.id,
            lines=batch.lines,
            run_id=ctx.run_id,
            now=ctx.rt.clock.now(),
        )
        result.counters += ItemCounters(
            inserted=loaded.inserted, updated=loaded.updated, unchanged=loaded.unchanged
        )
        if window.whole_day:
            note = _remove_voids(ctx, conn, window, batch, result)
        _cover(ctx, conn, window, batch)
        if reaches_now:
            sync_state.advance_watermark(
                conn, job="sales", location_id=ctx.location.id, watermark=window.end
            )
    if note is not None:  # only now: the run log writes through a connection of its own
        note.write(ctx)


@dataclass(frozen=True, slots=True)
class _Note:
    """A run-log line about a load, written once the load transaction has ended.

    The run log writes through its own connection; inside the load transaction that would wait
    on SQLite for the write lock this very transaction holds (30 s, then "database is locked",
    failing every other location queued behind it).
    """

    level: str
    event: str
    fields: dict[str, Any]

    def write(self, ctx: LocationContext) -> None:
        getattr(ctx.log, self.level)(self.event, ctx.location.id, **self.fields)


def _remove_voids(
    ctx: LocationContext,
    conn: Connection,
    window: SalesWindow,
    batch: SalesBatch,
    result: LocationResult,
) -> _Note | None:
    """Delete lines KLK no longer returns for the day, or hold a mass deletion back."""
    keep = {line.key for line in batch.lines}

    def delete_missing(apply: bool) -> int:
        return sales_loader.delete_missing_sales(
            conn,
            location_id=ctx.location.id,
            start=window.start,
            end=window.end,
            keep_keys=keep,
            apply=apply,
        )

    subject = f"sales {window.day.isoformat()}"
    missing = delete_missing(False)
    if not missing:  # KLK has every stored line again: a deletion held earlier is not needed
        held.resolve_held_deletions(
            conn, location_id=ctx.location.id, subject=subject, now=ctx.rt.clock.now()
        )
        return None
    stored = _stored_lines(conn, ctx.location.id, window)
    threshold = ctx.rt.settings.mass_deletion_threshold
    if is_mass_deletion(missing, stored, threshold) and not ctx.params.get("allow_mass_deletion"):
        note = (
            f"{missing} of {stored} lines of {window.day} vanished from KLK "
            f"(> {threshold:.0%}); not deleted"
        )
        held.record_held_deletion(
            conn,
            run_id=ctx.run_id,
            location_id=ctx.location.id,
            job=ctx.job.value,
            subject=subject,
            would_delete=missing,
            total=stored,
            now=ctx.rt.clock.now(),
        )
        result.counters += ItemCounters(held=missing)
        result.held_message = "; ".join(filter(None, [result.held_message, note]))
        return _Note("warning", "mass deletion held", {"detail": note})
    deleted = delete_missing(True)
    held.resolve_held_deletions(
        conn, location_id=ctx.location.id, subject=subject, now=ctx.rt.clock.now()
    )
    result.counters += ItemCounters(deleted=deleted)
    fields: dict[str, Any] = {"day": window.day.isoformat(), "deleted": deleted}
    return _Note("info", "voided lines removed", fields)


def _stored_lines(conn: Connection, location_id: str, window: SalesWindow) -> int:
    query = select(func.count()).where(
        sales_lines.c.location_id == location_id,
        sales_lines.c.sold_at >= window.start,
        sales_lines.c.sold_at < window.end,
    )
    return int(conn.execute(query).scalar_one())


def _cover(ctx: LocationContext, conn: Connection, window: SalesWindow, batch: SalesBatch) -> None:
    """Zero lines while the store was open is only provisional coverage (SPEC §4.9)."""
    loc = ctx.location
    provisional = not batch.sent and overlaps_opening_hours(
        loc.opening_hours, window.start, window.end, loc.zone
    )
    coverage.add_coverage(
        conn,
        location_id=loc.id,
        start=window.start,
        end=window.end,
        provisional=provisional,
        run_id=ctx.run_id,
        now=ctx.rt.clock.now(),
    )


def _covered(ctx: LocationContext, window: SalesWindow) -> bool:
    with ctx.rt.engine.connect() as conn:
        return coverage.is_covered(
            conn, location_id=ctx.location.id, start=window.start, end=window.end
        )


def _reacquire(ctx: LocationContext) -> None:
    """Backfills hold the lease one day at a time, so scheduled runs can interleave."""
    ctx.release()
    waited = 0.0
    while not ctx.acquire():
        if waited >= ctx.rt.settings.lease_ttl_seconds:
            raise LocationFailure(
                ErrorCategory.DEADLINE,
                ErrorPhase.EXTRACT,
                "another run kept this location busy; the rest is left for the next run",
            )
        ctx.rt.clock.sleep(1.0)
        waited += 1.0


def _sales_warehouse(location: Location) -> str:
    warehouse = location.sales_warehouse
    if warehouse is None:  # the runner never schedules sales for such a location
        raise LocationFailure(
            ErrorCategory.BAD_PAYLOAD, ErrorPhase.EXTRACT, f"{location.id} has no sales warehouse"
        )
    return warehouse.code


def _fields(c: ItemCounters) -> dict[str, int]:
    return {
        "fetched": c.fetched,
        "inserted": c.inserted,
        "updated": c.updated,
        "unchanged": c.unchanged,
        "deleted": c.deleted,
        "held": c.held,
    }
