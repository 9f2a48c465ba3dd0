"""The existing trigger contract (SPEC §6): ``POST /api/etl/sync`` and ``/api/etl/sync/ventas``.

Callers in the field read ``success``, ``message``, ``status`` (``"running"`` when accepted) and the
echoed ``ubicacion_id`` (and dates), treat any 2xx as accepted and 409 as "already running". New:
``run_id``, 202 for a new run, 200 for a repeated ``Idempotency-Key``, and the bearer token. A
scheduler fire sends ``X-Fluxion-Schedule`` and ``X-Fluxion-Scheduled-Time``; the fire itself is the
idempotency key, and ``answer_fire`` applies the schedule's fire policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Header, Response
from fastapi import status as http

from fluxion_etl.api import fires
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.deps import Services, Triggerer
from fluxion_etl.api.schemas import (
    ErrorAnswer,
    ReconcileBody,
    SalesSyncAnswer,
    SalesSyncBody,
    SyncAnswer,
    SyncBody,
)
from fluxion_etl.api.trigger import (
    ScheduledFire,
    TriggerOutcome,
    api_key,
    chain_today,
    start_api_run,
    start_run,
)
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.schedules import FireSource, decide_fire, fire_time_problem
from fluxion_etl.domain.states import FireOutcome, Job, Trigger
from fluxion_etl.errors import BadInputError

router = APIRouter(prefix="/api/etl", tags=["trigger"])

SCHEDULE_HEADER = fires.SCHEDULE_HEADER
JOB_PATHS = {
    Job.INVENTORY: "/api/etl/sync",
    Job.SALES: "/api/etl/sync/ventas",
    Job.RECONCILE: "/api/etl/sync/reconcile",
}
SCHEDULED_TIME_HEADER = "X-Fluxion-Scheduled-Time"

KEY_HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 180
KEY_PATTERN = r"^[\x21-\x7e]+$"  # printable ASCII without spaces

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=KEY_HEADER,
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        pattern=KEY_PATTERN,
        description="Repeat a call with the same key to get the same run (200), not a new one.",
    ),
]
ScheduleName = Annotated[
    str | None,
    Header(
        alias=SCHEDULE_HEADER,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_\-]*$",
        description="Sent by the scheduler (EventBridge via Lambda): the schedule's name.",
    ),
]
ScheduledTime = Annotated[
    str | None,
    Header(
        alias=SCHEDULED_TIME_HEADER,
        max_length=64,
        description="Sent by the scheduler: the fire's scheduled time, ISO 8601 with offset.",
    ),
]

ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "A repeated Idempotency-Key (same run), or a fire not started."},
    401: {"model": ErrorAnswer, "description": "No valid bearer token."},
    403: {"model": ErrorAnswer, "description": "The token's scope is not `trigger` or `admin`."},
    409: {
        "description": "Every requested location is held by a running or queued run (its "
        "`run_id`): nothing was started."
    },
    413: {"model": ErrorAnswer, "description": "The body is too large."},
    422: {"model": ErrorAnswer, "description": "A field is wrong; `message` names it and why."},
    503: {"model": ErrorAnswer, "description": "Database unreachable, or the run did not launch."},
}


@router.post(
    "/sync",
    status_code=202,
    response_model=SyncAnswer,
    responses=ANSWERS,
    summary="Sync inventory now (one location, or every location with ubicacion_id null)",
)
async def sync_inventory(
    *,
    response: Response,
    services: Services,
    caller: Triggerer,
    body: Annotated[SyncBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
    schedule: ScheduleName = None,
    scheduled_time: ScheduledTime = None,
) -> SyncAnswer:
    request, echoed = inventory_request(services, body or SyncBody(), caller.name, idempotency_key)
    outcome = await _trigger(services, request, _fire(schedule, scheduled_time))
    response.status_code = outcome.http_status
    return SyncAnswer(**answer_fields(outcome), **echoed)


@router.post(
    "/sync/ventas",
    status_code=202,
    response_model=SalesSyncAnswer,
    responses=ANSWERS,
    summary="Sync sales now: since each watermark, or whole local days fecha_inicio..fecha_fin",
)
async def sync_sales(
    *,
    response: Response,
    services: Services,
    caller: Triggerer,
    body: Annotated[SalesSyncBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
    schedule: ScheduleName = None,
    scheduled_time: ScheduledTime = None,
) -> SalesSyncAnswer:
    request, echoed = sales_request(services, body or SalesSyncBody(), caller.name, idempotency_key)
    outcome = await _trigger(services, request, _fire(schedule, scheduled_time))
    response.status_code = outcome.http_status
    return SalesSyncAnswer(**answer_fields(outcome), **echoed)


@router.post(
    "/sync/reconcile",
    status_code=202,
    response_model=SyncAnswer,
    responses=ANSWERS,
    summary="Reconcile sales now: re-read previous whole days and remove voided lines",
)
async def sync_reconcile(
    *,
    response: Response,
    services: Services,
    caller: Triggerer,
    body: Annotated[ReconcileBody | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
    schedule: ScheduleName = None,
    scheduled_time: ScheduledTime = None,
) -> SyncAnswer:
    """Not part of the field's contract (SPEC §6); the ``sales-reconcile`` schedule fires here."""
    body = body or ReconcileBody()
    request = _request(Job.RECONCILE, body.ubicacion_id, caller.name, idempotency_key)
    if body.days is not None:
        request = replace(request, params={"days": body.days})
    outcome = await _trigger(services, request, _fire(schedule, scheduled_time))
    response.status_code = outcome.http_status
    return SyncAnswer(**answer_fields(outcome), ubicacion_id=body.ubicacion_id)


def inventory_request(
    services: ServiceContext, body: SyncBody, requested_by: str, key: str | None
) -> tuple[RunRequest, dict[str, Any]]:
    """The run ``POST /sync`` asks for, and the fields its answer echoes."""
    request = _request(Job.INVENTORY, body.ubicacion_id, requested_by, key)
    return request, {"ubicacion_id": body.ubicacion_id}


def sales_request(
    services: ServiceContext, body: SalesSyncBody, requested_by: str, key: str | None
) -> tuple[RunRequest, dict[str, Any]]:
    """The run ``POST /sync/ventas`` asks for (``fecha_fin`` defaults to the location's today),
    and the fields its answer echoes."""
    if body.fecha_fin is not None and body.fecha_inicio is None:
        raise BadInputError("fecha_inicio", "required when fecha_fin is given (YYYY-MM-DD)")
    date_to = body.fecha_fin
    if body.fecha_inicio is not None and date_to is None:
        date_to = chain_today(services, body.ubicacion_id)
    request = _request(
        Job.SALES,
        body.ubicacion_id,
        requested_by,
        key,
        date_from=body.fecha_inicio,
        date_to=date_to,
    )
    echoed = {"ubicacion_id": body.ubicacion_id, "fecha_inicio": body.fecha_inicio}
    return request, echoed | {"fecha_fin": date_to}


def _request(
    job: Job, location_id: str | None, requested_by: str, key: str | None, **dates: Any
) -> RunRequest:
    return RunRequest(
        job=job,
        trigger=Trigger.API,
        locations=None if location_id is None else (location_id,),
        requested_by=requested_by,
        idempotency_key=None if key is None else api_key(key),
        **dates,
    )


def _fire(schedule: str | None, scheduled_time: str | None) -> ScheduledFire | None:
    """Both scheduler headers, or neither."""
    if schedule is None and scheduled_time is None:
        return None
    if schedule is None or scheduled_time is None:
        missing = SCHEDULE_HEADER if schedule is None else SCHEDULED_TIME_HEADER
        raise BadInputError(
            missing, "a scheduler fire sends both X-Fluxion-Schedule and X-Fluxion-Scheduled-Time"
        )
    try:
        when = datetime.fromisoformat(scheduled_time.strip())
        if when.tzinfo is None:
            raise ValueError("naive")
        utc = when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadInputError(
            SCHEDULED_TIME_HEADER, "must be ISO 8601 with an offset, e.g. 2026-01-05T14:00:00Z"
        ) from None
    return ScheduledFire(schedule_name=schedule, scheduled_for=utc)


async def _trigger(
    services: ServiceContext, request: RunRequest, fire: ScheduledFire | None
) -> TriggerOutcome:
    if fire is None:
        return await start_api_run(services, request)
    fired = replace(
        request,
        trigger=Trigger.SCHEDULE,
        idempotency_key=fire.key,
        schedule_name=fire.schedule_name,
        scheduled_for=fire.scheduled_for,
    )
    return await to_thread.run_sync(
        answer_fire, services, fire, fired, lambda req: start_run(services, req, fire=fire)
    )


def answer_fire(
    services: ServiceContext,
    fire: ScheduledFire,
    request: RunRequest,
    start: Callable[[RunRequest], TriggerOutcome],
) -> TriggerOutcome:
    """Answer one scheduler fire delivered through the API (SPEC §4.2, §4.11, §6).

    1. find its schedule (the database's, else the configuration's; unknown: 422)
    2. a fire already recorded is answered ``duplicate`` with the first delivery's run
    3. decide it (``decide_fire``): disabled, outside active hours or older than the maximum event
       age is recorded and answered 200 with ``status`` naming the outcome, so a correct trigger
       is never retried or dead-lettered
    4. otherwise start its run (the fire is the idempotency key, so concurrent deliveries make
       one run) and record the fire ``started`` with that run

    A fire with ``ubicacion_id`` null runs over its schedule's locations.
    """
    schedule = fires.schedule_for(services, fire.schedule_name)
    if schedule.job is not request.job:
        raise BadInputError(
            SCHEDULE_HEADER,
            f"schedule {schedule.name} runs {schedule.job.value}; send its fires to "
            f"{JOB_PATHS.get(schedule.job, 'the route of that job')}",
        )
    if request.locations is None and schedule.locations is not None:
        request = replace(request, locations=schedule.locations)
    now = services.clock.now()
    problem = fire_time_problem(schedule, fire.scheduled_for, now, on_cron=False)
    if problem is not None:
        raise BadInputError(SCHEDULED_TIME_HEADER, problem)
    earlier = fires.earlier_delivery(services, fire)
    if earlier is not None:
        return earlier
    outcome = decide_fire(schedule, fire.scheduled_for, now, FireSource.EXTERNAL)
    if outcome is not None:
        detail = fires.not_started_detail(outcome, schedule, fire, now)
        recorded = fires.record(services, fire, outcome, detail=detail)
        if recorded.existing:
            return fires.duplicate(services, fire, recorded.first)
        return fire_not_started(outcome, detail)
    answer = start(request)
    if answer.fire_outcome is FireOutcome.STARTED:
        fires.record(services, fire, FireOutcome.STARTED, run_id=answer.run_id)
    return answer


def fire_not_started(
    outcome: FireOutcome, detail: str, run_id: int | None = None
) -> TriggerOutcome:
    """The answer to a fire ``answer_fire`` decides not to start: 200, so it is not retried."""
    return TriggerOutcome(
        http_status=http.HTTP_200_OK,
        success=True,
        status=outcome.value,
        message=detail,
        run_id=run_id,
        fire_outcome=outcome,
    )


def answer_fields(outcome: TriggerOutcome) -> dict[str, Any]:
    return {
        "success": outcome.success,
        "message": outcome.message,
        "status": outcome.status,
        "run_id": outcome.run_id,
        "run_status": outcome.run_status,
        "fire_outcome": outcome.fire_outcome,
    }
