"""From a trigger call to a queued and launched run (SPEC §4.1 to §4.3, §6).

start_run:
  1. validate the request (unknown location, dates) before anything is written
  2. a repeated idempotency key (or fire) returns the existing run: 200, or ``duplicate`` for a fire
  3. an API call that finds every requested location held by another run is refused: 409
  4. queue the run (the key's unique column makes concurrent repeats yield one run)
  5. launch it; a failed hand-off fails the run with category ``launch``: 503

Step 3 counts a queued run as holding the locations it covers (it takes their leases when it
starts). Step 4 is one ``INSERT … ON CONFLICT DO NOTHING``. The trigger path is hot (callers retry,
schedules fire on the minute, many callers at once): ``start_api_run`` serves API calls on the
event loop, their reads shared with concurrent calls and concurrent identical starts made once
(``api.lookups``); on PostgreSQL it queues the run on the loop too (``api.loopreads``), and hands
it to a launcher that needs no I/O for it (inline) there, the rest in a worker thread.
``start_run`` is the blocking form for scheduler fires and the control centre.

Scheduler fires skip step 3: a fire is answered so that it is never retried (SPEC §6), and the run
it starts records each busy location as ``skipped_busy``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import structlog
from anyio import to_thread
from fastapi import status as http
from sqlalchemy import Connection

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.lookups import Holders, TriggerReads, lookups
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import FireOutcome, Job, RunStatus
from fluxion_etl.domain.windows import local_date
from fluxion_etl.engine.submit import submit, validate_request
from fluxion_etl.errors import BadInputError
from fluxion_etl.launchers import LaunchError, fail_unlaunched
from fluxion_etl.store import ledger
from fluxion_etl.store.ledger import RunRow

log = structlog.get_logger("fluxion.api")

# The engine names fields as the CLI does; the API answers with the contract's names.
API_FIELDS = {"location": "ubicacion_id", "dates": "fecha_inicio"}
API_KEY_PREFIX = "api:"


@dataclass(frozen=True, slots=True)
class ScheduledFire:
    """A scheduler's delivery: (schedule, scheduled UTC time) identifies it (SPEC §4.2)."""

    schedule_name: str
    scheduled_for: datetime

    @property
    def key(self) -> str:
        return ledger.fire_key(self.schedule_name, self.scheduled_for)


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    """What the trigger routes answer, before it is shaped into the contract's JSON."""

    http_status: int
    success: bool
    status: str
    message: str
    run_id: int | None = None
    run_status: RunStatus | None = None
    fire_outcome: FireOutcome | None = None


def api_key(header: str) -> str:
    """Keys sent by callers live apart from fire keys, so no caller can pre-empt a fire."""
    return API_KEY_PREFIX + header


def chain_today(services: ServiceContext, location_id: str | None) -> date:
    """Today in the location's zone (the chain's first location's for a chain-wide request)."""
    config = services.config
    known = location_id is not None and config.knows(location_id)
    location = config.location(location_id) if known and location_id else config.locations[0]
    return local_date(services.clock.now(), location.zone)


def start_run(
    services: ServiceContext, request: RunRequest, *, fire: ScheduledFire | None = None
) -> TriggerOutcome:
    """Steps 1 to 5 as one blocking call (scheduler fires, the control centre's buttons)."""
    _validate(services, request)
    with services.read_engine.connect() as conn:
        existing = _run_for_key(conn, request.idempotency_key)
        if existing is not None:
            return _repeated(existing, request, fire)
        busy = None if fire else busy_holder(services, request, Holders.read(conn))
        if busy is not None:  # the holder may be the run a concurrent call made for this key
            existing = _run_for_key(conn, request.idempotency_key)
            return busy if existing is None else _repeated(existing, request, fire)
    return _queue_and_launch(services, request, fire)


async def start_api_run(
    services: ServiceContext, request: RunRequest, reads: TriggerReads | None = None
) -> TriggerOutcome:
    """Steps 1 to 5 for an API call, on the event loop. Its reads are shared with concurrent
    calls (``api.lookups``; ``reads``: already made for this call, by the fast path). A call
    whose locations those reads found held is answered 409 at once, unless an identical start is
    under way in this process. Steps 3 to 5 run once at a time per request in this process,
    reading afresh, so they see the run the previous identical start queued; concurrent
    identical calls wait for that instead of racing it: with the same key they get its run
    (200), without a key the run it started is the one already running (409)."""
    _validate(services, request)
    shared = lookups(services)
    key = request.idempotency_key
    if key is not None:
        if reads is None:
            reads = await shared.trigger_reads(None, key)
        if reads.run is not None:
            return _repeated(reads.run, request, None)
    flight = (key, _same_request(request))
    if reads is not None and not shared.starts.running(flight):
        # Read after the call arrived, with no identical start under way here to wait for: a
        # location held then is this call's answer (409), as the start's own read would give.
        busy = busy_holder(services, request, reads.holders)
        if busy is not None:
            return busy

    async def start() -> TriggerOutcome:
        fresh = await shared.trigger_reads(None, key)
        if fresh.run is not None:  # made meanwhile by a call with this key (another process)
            return _repeated(fresh.run, request, None)
        busy = busy_holder(services, request, fresh.holders)
        if busy is not None:
            return busy
        if not shared.queues_on_loop:
            return await to_thread.run_sync(_queue_and_launch, services, request, None)
        return await _queue_and_launch_on_loop(services, request)

    # the same key with another body is another flight: the database's key decides (422)
    first, outcome = await shared.starts.run(flight, start)
    if first or outcome.run_id is None:
        return outcome
    ok = outcome.http_status in (http.HTTP_200_OK, http.HTTP_202_ACCEPTED)
    if key is not None and ok and outcome.run_status is not None:
        # the run the first one found or made for this key and this same request (the flight's
        # key), found or made while this call waited: a repeat of it
        return _repeat_of(outcome.run_id, outcome.run_status)
    if key is None and outcome.http_status == http.HTTP_202_ACCEPTED:
        return _busy(request, outcome.run_id, _where(_locations(services, request)))
    return outcome  # busy, or the launch failed: the same answer


def _same_request(request: RunRequest) -> Hashable:
    """What makes two calls the same request (the caller's name does not)."""
    params = tuple(sorted((name, repr(value)) for name, value in request.params.items()))
    return (request.job, request.locations, request.date_from, request.date_to, params)


def _queue_and_launch(
    services: ServiceContext, request: RunRequest, fire: ScheduledFire | None
) -> TriggerOutcome:
    """Steps 4 and 5."""
    result = submit(
        services.engine,
        request,
        config=services.config,
        settings=services.settings,
        clock=services.clock,
        launcher=services.launcher.name,
    )
    if not result.created:  # a concurrent request with the same key was first
        with services.read_engine.connect() as conn:
            existing = _run_for_key(conn, request.idempotency_key)
        assert existing is not None
        return _repeated(existing, request, fire)
    return _launch(services, result.run_id, request, fire)


async def _queue_and_launch_on_loop(
    services: ServiceContext, request: RunRequest
) -> TriggerOutcome:
    """Steps 4 and 5 as ``_queue_and_launch`` takes them, the run queued on the event loop."""
    config, clock = services.config, services.clock
    # the request is checked again against the chain's today, as ``engine.submit`` does
    zone = config.locations[0].zone if config.locations else None
    today = local_date(clock.now(), zone) if zone else clock.now().date()
    validate_request(request, config=config, settings=services.settings, today=today)
    values = ledger.run_values(request, now=clock.now(), launcher=services.launcher.name)
    shared = lookups(services)
    run_id = await shared.queue_run(values)
    if run_id is None:  # a concurrent request with the same key was first (another process)
        existing = (await shared.trigger_reads(None, request.idempotency_key)).run
        assert existing is not None
        return _repeated(existing, request, None)
    if not services.launcher.hands_off_in_process:
        return await to_thread.run_sync(_launch, services, run_id, request, None)
    try:
        services.launcher.launch(run_id)
    except LaunchError as exc:
        return await to_thread.run_sync(_launch_failed, services, run_id, exc, None)
    return _launched(run_id, request, None)


def _validate(services: ServiceContext, request: RunRequest) -> None:
    scope = request.locations[0] if request.locations else None
    try:
        validate_request(
            request,
            config=services.config,
            settings=services.settings,
            today=chain_today(services, scope),
        )
    except BadInputError as exc:
        rule = str(exc).removeprefix(f"{exc.field}: ")
        raise BadInputError(API_FIELDS.get(exc.field, exc.field), rule) from None


def _run_for_key(conn: Connection, key: str | None) -> RunRow | None:
    return None if key is None else ledger.run_for_key(conn, key)


def _repeated(run: RunRow, request: RunRequest, fire: ScheduledFire | None) -> TriggerOutcome:
    """The answer for a key already used: the same run, if it was for the same request."""
    asked = (request.job, request.locations, request.date_from, request.date_to)
    same = (run.job, run.scope, run.date_from, run.date_to) == asked
    if not same:
        field = "X-Fluxion-Schedule" if fire else "Idempotency-Key"
        raise BadInputError(
            field,
            f"already used for a different request (run {run.id}, job {run.job.value}); "
            "use a new key for a new request",
        )
    if fire is not None:
        when = fire.scheduled_for.isoformat()
        return TriggerOutcome(
            http_status=http.HTTP_200_OK,
            success=True,
            status=FireOutcome.DUPLICATE.value,
            message=f"fire {fire.schedule_name} at {when} already started run {run.id}",
            run_id=run.id,
            run_status=run.status,
            fire_outcome=FireOutcome.DUPLICATE,
        )
    return _repeat_of(run.id, run.status)


def _repeat_of(run_id: int, run_status: RunStatus) -> TriggerOutcome:
    """The answer to an API call whose key's run, for the same request, is ``run_id``."""
    return TriggerOutcome(
        http_status=http.HTTP_200_OK,
        success=True,
        status=contract_status(run_status),
        message=f"run {run_id} already exists for this Idempotency-Key ({run_status.value})",
        run_id=run_id,
        run_status=run_status,
    )


def contract_status(run_status: RunStatus) -> str:
    """``running`` while queued or running (what existing callers read), else the final state."""
    return "running" if not run_status.is_final else run_status.value


def busy_holder(
    services: ServiceContext, request: RunRequest, held: Holders
) -> TriggerOutcome | None:
    """409 when other runs hold every requested location: a live lease, a queued run that
    covers it (it takes the lease when it starts: a second run queued now would find it taken),
    or a running run that has not finished it yet (it will take the lease, or is between two
    of its locations) and is alive: it heartbeat within a lease's lifetime, as a live lease."""
    wanted = _locations(services, request)
    if not wanted:
        return None
    now = services.clock.now()
    holding = {
        lease.location_id: lease.run_id
        for lease in held.leases
        if lease.job is request.job and lease.expires_at > now
    }
    alive_since = now - timedelta(seconds=services.settings.lease_ttl_seconds)
    for item in held.unfinished:
        if item.job is request.job and item.alive_at > alive_since:
            holding.setdefault(item.location_id, item.run_id)
    for run_id, job, scope in held.queued:
        if job is request.job:
            for location_id in wanted if scope is None else scope:
                holding.setdefault(location_id, run_id)
    if not all(location_id in holding for location_id in wanted):
        return None
    holders = [holding[location_id] for location_id in wanted]
    return _busy(request, max(set(holders), key=holders.count), _where(wanted))


def _where(wanted: Sequence[str]) -> str:
    return wanted[0] if len(wanted) == 1 else f"all {len(wanted)} requested locations"


def _busy(request: RunRequest, run_id: int, where: str) -> TriggerOutcome:
    return TriggerOutcome(
        http_status=http.HTTP_409_CONFLICT,
        success=False,
        status="busy",
        message=f"already running: run {run_id} holds {where} for {request.job.value}; "
        "nothing was started (retry after it finishes)",
        run_id=run_id,
    )


def _locations(services: ServiceContext, request: RunRequest) -> list[str]:
    if request.locations is not None:
        return list(request.locations)
    return [
        loc.id
        for loc in services.config.locations
        if loc.active and (request.job is Job.INVENTORY or loc.has_sales)
    ]


def _launch(
    services: ServiceContext, run_id: int, request: RunRequest, fire: ScheduledFire | None
) -> TriggerOutcome:
    try:
        services.launcher.launch(run_id)
    except LaunchError as exc:
        return _launch_failed(services, run_id, exc, fire)
    return _launched(run_id, request, fire)


def _launch_failed(
    services: ServiceContext, run_id: int, exc: LaunchError, fire: ScheduledFire | None
) -> TriggerOutcome:
    """The run fails with category ``launch`` and the reason: 503 (a blocking write)."""
    reason = fail_unlaunched(
        services.engine,
        run_id,
        launcher=services.launcher.name,
        error=exc,
        now=services.clock.now(),
    )
    log.error("launch failed", run_id=run_id, reason=str(exc))
    return TriggerOutcome(
        http_status=http.HTTP_503_SERVICE_UNAVAILABLE,
        success=False,
        status=RunStatus.FAILED.value,
        message=f"run {run_id} {reason}",
        run_id=run_id,
        run_status=RunStatus.FAILED,
        fire_outcome=FireOutcome.STARTED if fire else None,
    )


def _launched(run_id: int, request: RunRequest, fire: ScheduledFire | None) -> TriggerOutcome:
    scope = ", ".join(request.locations) if request.locations else "every location"
    return TriggerOutcome(
        http_status=http.HTTP_202_ACCEPTED,
        success=True,
        status="running",
        message=f"run {run_id} started: {request.job.value} for {scope}",
        run_id=run_id,
        run_status=RunStatus.QUEUED,
        fire_outcome=FireOutcome.STARTED if fire else None,
    )
