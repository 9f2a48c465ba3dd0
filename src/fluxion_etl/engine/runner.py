"""The one runner (SPEC §4.1–§4.5). Every trigger ends here with a queued run id.

execute_run:
  1. claim the run (queued → running) with its job's deadline
  2. resolve its locations and create their items
  3. keep a heartbeat (run and leases) and watch for cancellation
  4. process locations concurrently (bounded): circuit → lease → pipeline → release
  5. mark what the deadline or a cancel left unstarted
  6. finish the run with the summarised status
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import date, datetime, timedelta

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.domain.clock import real_seconds
from fluxion_etl.domain.records import CatalogueItem, Location
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase, ItemStatus, Job, RunStatus
from fluxion_etl.domain.windows import backfill_days
from fluxion_etl.engine.crashpoints import crash_point
from fluxion_etl.engine.inventory import sync_inventory
from fluxion_etl.engine.location import LocationContext
from fluxion_etl.engine.memory import release_memory, tune_allocator
from fluxion_etl.engine.outcome import LocationFailure
from fluxion_etl.engine.runlog import RunLog
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.engine.sales import reconcile_days, sync_sales_days, sync_sales_scheduled
from fluxion_etl.store import inventory_loader, leases, ledger, sync_state
from fluxion_etl.store.db import read_only_engine
from fluxion_etl.store.ledger import RunRow


def locations_for(rt: Runtime, job: Job, scope: list[str] | None) -> list[Location]:
    """Active locations in scope that have the job (a distribution centre has no sales)."""
    chosen = [
        loc for loc in rt.config.locations if loc.active and (scope is None or loc.id in scope)
    ]
    if job is Job.INVENTORY:
        return chosen
    return [loc for loc in chosen if loc.has_sales]


def execute_run(rt: Runtime, run_id: int) -> RunStatus:
    """Claim and execute a queued run; a run not queued (claimed elsewhere, ended, unknown) is
    left alone and its current status returned."""
    status = try_execute_run(rt, run_id)
    if status is not None:
        return status
    with rt.engine.connect() as conn:
        existing = ledger.get_run(conn, run_id)
    return RunStatus(existing.status) if existing else RunStatus.FAILED


def try_execute_run(rt: Runtime, run_id: int) -> RunStatus | None:
    """Claim and execute a queued run; None when it could not be claimed (not queued)."""
    claimed = _claim(rt, run_id)
    if claimed is None:
        return None
    run, locations = claimed
    log = RunLog(
        rt.engine,
        rt.clock,
        run_id=run_id,
        job=run.job.value,
        max_lines=rt.settings.run_log_max_lines,
    )
    log.info(
        "run started", locations=len(locations), trigger=run.trigger, requested_by=run.requested_by
    )
    assert run.deadline_at is not None
    tune_allocator()
    heart = _Heartbeat(rt, run_id, log)
    heart.start()
    try:
        try:
            statuses, products = _process_all(rt, run, locations, log=log, heart=heart)
        finally:
            heart.stop()
        if products:
            with rt.engine.begin() as conn:
                inventory_loader.upsert_products(conn, products.values(), rt.clock.now())
        return _finish(rt, run, statuses, log, cancelled=heart.cancel_requested)
    finally:
        log.flush()


def _claim(rt: Runtime, run_id: int) -> tuple[RunRow, list[Location]] | None:
    """queued → running, with a pending item for each of its locations, in one transaction: a
    running run is seen holding every location it has not finished (``api.trigger``'s busy
    check), from the moment it stops being queued."""
    with rt.engine.begin() as conn:
        run = ledger.get_run(conn, run_id)
        if run is None:
            return None
        now = rt.clock.now()
        deadline = now + timedelta(seconds=rt.settings.deadline_seconds(run.job))
        if not ledger.claim_run(conn, run_id, owner=rt.owner, now=now, deadline_at=deadline):
            return None
        locations = locations_for(rt, run.job, list(run.scope) if run.scope is not None else None)
        ledger.create_items(conn, run_id, [loc.id for loc in locations])
        claimed = ledger.get_run(conn, run_id)
        assert claimed is not None  # claimed in this transaction
        return claimed, locations


def _process_all(
    rt: Runtime, run: RunRow, locations: list[Location], *, log: RunLog, heart: _Heartbeat
) -> tuple[dict[str, ItemStatus], dict[str, CatalogueItem]]:
    """Start locations while there is room and time; a cancel, shutdown or the deadline stops
    further starts (running locations finish), and what never started is marked so.

    Products are kept one per sku as catalogues arrive (the last seen wins, as in the upsert):
    memory stays at one catalogue's worth however many locations the run has, and the pages a
    finished location freed go back to the system (``engine.memory``)."""
    statuses: dict[str, ItemStatus] = {}
    products: dict[str, CatalogueItem] = {}
    pending = list(locations)
    running: dict[Future[tuple[ItemStatus, list[CatalogueItem]]], str] = {}
    with ThreadPoolExecutor(max_workers=rt.settings.concurrency, thread_name_prefix="loc") as pool:
        while pending or running:
            if pending and len(running) < rt.settings.concurrency and _must_stop(rt, run, heart):
                _mark_unstarted(rt, run, pending, log, heart.cancel_requested)
                statuses.update((loc.id, ItemStatus.FAILED) for loc in pending)
                pending = []
            while pending and len(running) < rt.settings.concurrency:
                ctx = _location_context(rt, run, pending.pop(0), log)
                running[pool.submit(_process_location, ctx, run)] = ctx.location.id
            done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                loc_id, (status, seen) = running.pop(future), future.result()
                statuses[loc_id] = status
                products.update((item.sku, item) for item in seen)
                release_memory()  # the location's payloads are gone: give their pages back
                if rt.on_progress is not None:
                    rt.on_progress(loc_id, "done", status.value)
    return statuses, products


def _must_stop(rt: Runtime, run: RunRow, heart: _Heartbeat) -> bool:
    """Before locations start: a cancel (asked of the ledger: a run shorter than a heartbeat
    would never see one otherwise), a shutdown, or the deadline."""
    assert run.deadline_at is not None
    if rt.stop_requested() or rt.clock.now() >= run.deadline_at:
        return True
    return heart.poll_cancel()


def _location_context(rt: Runtime, run: RunRow, loc: Location, log: RunLog) -> LocationContext:
    assert run.deadline_at is not None
    params = dict(run.params or {})
    return LocationContext(rt, run.id, Job(run.job), loc, log, run.deadline_at, params)


def _process_location(ctx: LocationContext, run: RunRow) -> tuple[ItemStatus, list[CatalogueItem]]:
    # Any line logged while this location runs (in this pool thread) names the run and location.
    with structlog.contextvars.bound_contextvars(
        run_id=run.id, job=ctx.job.value, location_id=ctx.location.id
    ):
        try:
            return _process_location_bound(ctx, run)
        except SQLAlchemyError as exc:  # before the lease: circuit check, acquire, busy skip
            failure = LocationFailure(ErrorCategory.DATABASE, ErrorPhase.EXTRACT, _short(exc))
            _record_failure(ctx, failure)
            return ItemStatus.FAILED, []


def _process_location_bound(
    ctx: LocationContext, run: RunRow
) -> tuple[ItemStatus, list[CatalogueItem]]:
    skipped = _begin_location(ctx, run)
    if skipped is not None:
        return skipped, []
    loc = ctx.location
    committed = False
    try:
        ctx.log.info("location started", loc.id)
        products = _run_pipeline(ctx, run)
        committed = ctx.released_with_load  # its load committed, the lease's release with it
        crash_point("committed", loc.id)
        return ItemStatus.SUCCEEDED, products
    except LocationFailure as failure:
        _record_failure(ctx, failure)
        return ItemStatus.FAILED, []
    except SQLAlchemyError as exc:
        _record_failure(ctx, LocationFailure(ErrorCategory.DATABASE, ErrorPhase.LOAD, _short(exc)))
        return ItemStatus.FAILED, []
    except Exception as exc:  # a bug must fail one location loudly, not the whole run
        structlog.get_logger("fluxion.run").exception("unexpected error", location_id=loc.id)
        message = f"internal error: {type(exc).__name__}: {_short(exc)}"
        _record_failure(ctx, LocationFailure(None, ErrorPhase.LOAD, message))
        return ItemStatus.FAILED, []
    finally:
        if not committed:
            _release_quietly(ctx)


def _begin_location(ctx: LocationContext, run: RunRow) -> ItemStatus | None:
    """Circuit check, lease and the item marked started, in one transaction (one commit a
    location instead of three: on a busy machine each round trip waits for a core).

    None when the location may run (its lease is held); otherwise the status it was skipped
    with, recorded in the ledger."""
    rt, loc = ctx.rt, ctx.location
    with rt.engine.begin() as conn:
        now = rt.clock.now()
        if not sync_state.circuit_allows(conn, job=ctx.job.value, location_id=loc.id, now=now):
            state = sync_state.get_state(conn, ctx.job.value, loc.id)
            cause = state.last_error_category if state else None
            ledger.finish_item(
                conn,
                run.id,
                loc.id,
                ItemStatus.SKIPPED_OPEN_CIRCUIT,
                now=now,
                error_category=cause.value if cause else None,
                error_message="circuit open after repeated failures; probing again later",
            )
            skipped, note = ItemStatus.SKIPPED_OPEN_CIRCUIT, None
        elif not ctx.acquire_in(conn):
            skipped, note = ItemStatus.SKIPPED_BUSY, _skip_busy(ctx, run, conn)
        else:
            ledger.start_item(conn, run.id, loc.id, now=now)
            return None
    # Logged after the commit: the run log writes through a connection of its own.
    if skipped is ItemStatus.SKIPPED_OPEN_CIRCUIT:
        ctx.log.warning("skipped: circuit open", loc.id)
    else:
        ctx.log.warning("skipped: location busy", loc.id, detail=note)
    return skipped


def _run_pipeline(ctx: LocationContext, run: RunRow) -> list[CatalogueItem]:
    if ctx.job is Job.INVENTORY:
        _, products = sync_inventory(ctx)
        return products
    if ctx.job is Job.RECONCILE:
        days = ctx.params.get("days")
        days = days if isinstance(days, int) and days > 0 else ctx.rt.settings.reconcile_days
        sync_sales_days(ctx, reconcile_days(ctx, days), skip_covered=False)
    elif run.date_from is not None and run.date_to is not None:
        sync_sales_days(ctx, _days(run.date_from, run.date_to), skip_covered=True)
    else:
        sync_sales_scheduled(ctx)
    return []


def _days(date_from: date, date_to: date) -> list[date]:
    return backfill_days(date_from, date_to)


def _skip_busy(ctx: LocationContext, run: RunRow, conn: Connection) -> str:
    """Record the item skipped as busy (naming the run that holds the lease); the message."""
    holder = leases.holder(conn, ctx.job.value, ctx.location.id)
    message = f"busy: run {holder.run_id} holds this location" if holder else "busy"
    ledger.finish_item(
        conn,
        run.id,
        ctx.location.id,
        ItemStatus.SKIPPED_BUSY,
        now=ctx.rt.clock.now(),
        error_category=ErrorCategory.BUSY.value,
        error_message=message,
    )
    return message


def _record_failure(ctx: LocationContext, failure: LocationFailure) -> None:
    """Nothing of the payload was loaded; keep it for inspection and count the failure."""
    rt, loc, now = ctx.rt, ctx.location, ctx.rt.clock.now()
    try:
        with rt.engine.begin() as conn:
            if failure.raw is not None:
                ledger.save_raw_payload(
                    conn,
                    run_id=ctx.run_id,
                    location_id=loc.id,
                    call=failure.call or "?",
                    category=failure.category_value or "internal",
                    body=failure.raw,
                    now=now,
                    max_bytes=rt.settings.raw_payload_max_bytes,
                )
            ledger.finish_item(
                conn,
                ctx.run_id,
                loc.id,
                ItemStatus.FAILED,
                now=now,
                error_category=failure.category_value,
                error_phase=failure.phase.value,
                error_message=failure.message[:2000],
                timings=failure.timings,
            )
            if failure.category is not None:
                # A bug (no category) is no KLK failure: it does not count towards the circuit,
                # and sync_state holds SPEC §4's categories only (its reader refuses any other).
                sync_state.record_failure(
                    conn,
                    job=ctx.job.value,
                    location_id=loc.id,
                    now=now,
                    category=failure.category.value,
                    message=failure.message[:2000],
                    threshold=rt.settings.circuit_failure_threshold,
                    reset_after=timedelta(seconds=rt.settings.circuit_reset_seconds),
                    reset_max=timedelta(seconds=rt.settings.circuit_reset_max_seconds),
                )
    except SQLAlchemyError as exc:
        # e.g. the location's sync state row is locked: the ledger must still say it failed,
        # or a finished run would show this location running forever
        ctx.log.error("could not record the failure", loc.id, error=_short(exc))
        _finish_item_alone(ctx, failure)
    ctx.log.error(
        "location failed",
        loc.id,
        category=failure.category_value,
        phase=failure.phase.value,
        message=failure.message[:500],
    )


def _finish_item_alone(ctx: LocationContext, failure: LocationFailure) -> None:
    """The item's failure without the raw payload and the circuit's count (what failed above)."""
    try:
        with ctx.rt.engine.begin() as conn:
            ledger.finish_item(
                conn,
                ctx.run_id,
                ctx.location.id,
                ItemStatus.FAILED,
                now=ctx.rt.clock.now(),
                error_category=failure.category_value,
                error_phase=failure.phase.value,
                error_message=failure.message[:2000],
            )
    except SQLAlchemyError as exc:  # the database is gone: the reaper settles the run later
        ctx.log.error("could not record the failure at all", ctx.location.id, error=_short(exc))


def _release_quietly(ctx: LocationContext) -> None:
    try:
        ctx.release()
    except SQLAlchemyError as exc:  # the lease expires by itself; reapers free it
        ctx.log.warning("lease not released; it will expire", ctx.location.id, error=_short(exc))


def _mark_unstarted(
    rt: Runtime, run: RunRow, pending: list[Location], log: RunLog, cancelled: bool
) -> None:
    if not pending:
        return
    if cancelled or rt.stop_requested():
        category, message = (
            None,
            (
                "run cancelled before this location started"
                if cancelled
                else "stopped (shutdown or interrupt) before this location started; left for the "
                "next run"
            ),
        )
    else:
        category, message = (
            ErrorCategory.DEADLINE.value,
            "the run's deadline passed before this location started",
        )
    with rt.engine.begin() as conn:
        for loc in pending:
            ledger.finish_item(
                conn,
                run.id,
                loc.id,
                ItemStatus.FAILED,
                now=rt.clock.now(),
                error_category=category,
                error_message=message,
            )
    log.warning("locations not started", count=len(pending), reason=message)


def _finish(
    rt: Runtime, run: RunRow, statuses: dict[str, ItemStatus], log: RunLog, *, cancelled: bool
) -> RunStatus:
    now = rt.clock.now()
    assert run.deadline_at is not None
    with rt.engine.begin() as conn:
        # Items still unfinished are locations whose outcome never reached the database (e.g.
        # it restarted while they failed one after another): never left so under a finished run.
        ledger.fail_unfinished_items(
            conn, run.id, now=now, category=ErrorCategory.DATABASE.value, message=UNRECORDED
        )
        items = ledger.get_items(conn, run.id)
        status, category, message = _final_status(run, items, statuses, now, cancelled)
        ledger.finish_run(
            conn, run.id, status, now=now, error_category=category, error_message=message
        )
    log.info("run finished", status=status.value, message=message)
    return status


UNRECORDED = (
    "its outcome could not be recorded (the database was unavailable); "
    "the next run syncs this location again"
)


def _final_status(
    run: RunRow,
    items: list[ledger.ItemRow],
    statuses: dict[str, ItemStatus],
    now: datetime,
    cancelled: bool,
) -> tuple[RunStatus, str | None, str | None]:
    assert run.deadline_at is not None
    if cancelled:
        return RunStatus.CANCELLED, None, "cancelled on request"
    if now >= run.deadline_at and any(
        i.error_category == ErrorCategory.DEADLINE.value for i in items
    ):
        return RunStatus.TIMED_OUT, ErrorCategory.DEADLINE.value, "the run's deadline passed"
    if not items:
        return RunStatus.SUCCEEDED, None, "no location in scope has this job"
    status = ledger.summarize_status([ItemStatus(i.status) for i in items])
    held_items = [i for i in items if i.held]
    if status is RunStatus.SUCCEEDED and held_items:
        status = RunStatus.PARTIAL
    failed = [i for i in items if i.status != ItemStatus.SUCCEEDED.value]
    if status is RunStatus.SUCCEEDED:
        return status, None, None
    category = _run_category(failed)
    # The example named in the message is a location that failed for the run's category.
    first = (
        next((i for i in failed if i.error_category == category and i.error_message), None)
        or next((i for i in failed if i.error_message), None)
        or (held_items[0] if held_items else None)
    )
    summary = f"{len(failed)} of {len(items)} locations not loaded"
    if held_items:
        summary += f"; mass deletion held at {len(held_items)}"
    if first is not None:
        summary += f"; {first.location_id}: {first.error_message}"
    return status, category, summary[:2000]


def _run_category(failed: list[ledger.ItemRow]) -> str | None:
    """The category that failed the most locations (ties: by name). A location skipped as busy
    explains the run only when nothing failed for a real reason."""
    counts = Counter(i.error_category for i in failed if i.error_category)
    real = {c: n for c, n in counts.items() if c != ErrorCategory.BUSY.value} or counts
    return min(real, key=lambda c: (-real[c], c), default=None)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__


class _Heartbeat:
    """Renews the run's heartbeat and leases; notices cancellation requests."""

    def __init__(self, rt: Runtime, run_id: int, log: RunLog) -> None:
        self._rt, self._run_id, self._log = rt, run_id, log
        self._reader = read_only_engine(rt.engine)
        self._stop = threading.Event()
        self.cancel_requested = False
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        # Leases are judged on the run's clock: a scaled (simulated) clock beats faster.
        interval = real_seconds(self._rt.settings.heartbeat_seconds, self._rt.clock)
        while not self._stop.wait(interval):
            self.beat()

    def poll_cancel(self) -> bool:
        """Whether a cancel was requested: noticed by a beat, or asked of the ledger now."""
        if not self.cancel_requested:
            try:
                # Read-only: on SQLite it takes no write lock, so no load waits for it.
                with self._reader.connect() as conn:
                    self.cancel_requested = ledger.cancel_requested(conn, self._run_id)
            except SQLAlchemyError:
                pass  # the next beat asks again
        return self.cancel_requested

    def beat(self) -> None:
        rt = self._rt
        ttl = timedelta(seconds=rt.settings.lease_ttl_seconds)
        try:
            with rt.engine.begin() as conn:
                now = rt.clock.now()
                if ledger.heartbeat_run(conn, self._run_id, owner=rt.owner, now=now):
                    self.cancel_requested = True
                leases.renew(conn, run_id=self._run_id, owner=rt.owner, now=now, ttl=ttl)
        except SQLAlchemyError:
            pass  # a missed beat is survivable; the TTL is several beats long
        self._log.flush()  # lines of a quiet stretch (a slow KLK call) reach the database too
