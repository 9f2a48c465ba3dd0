"""Sales gaps (SPEC §4.9) and their recovery over HTTP: ``GET /api/etl/gaps`` (read) and
``POST /api/etl/gaps/recover`` (trigger), the same functions the CLI and the control centre call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Body, Query, Response
from fastapi import status as http
from pydantic import BaseModel, ConfigDict, Field

from fluxion_etl import launchers
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.deps import Reader, Services, Triggerer
from fluxion_etl.api.schemas import ErrorAnswer
from fluxion_etl.errors import BadInputError
from fluxion_etl.ops import gaps as ops_gaps
from fluxion_etl.ops.recover import RecoveryRun, recover_gaps
from fluxion_etl.store import audit

log = structlog.get_logger("fluxion.api")
T = TypeVar("T")

router = APIRouter(prefix="/api/etl/gaps", tags=["gaps"])

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "No valid bearer token."},
    403: {"model": ErrorAnswer, "description": "The token's scope is too small."},
    422: {"model": ErrorAnswer, "description": "A parameter is wrong."},
    503: {"model": ErrorAnswer, "description": "The database is not reachable."},
}

LocationQuery = Annotated[
    str | None, Query(alias="location", max_length=64, description="A location id; all if absent.")
]
DaysQuery = Annotated[
    int, Query(ge=1, le=ops_gaps.MAX_DAYS, description="How many local days back, today included.")
]


class GapOut(BaseModel):
    location_id: str
    day: date
    start: datetime
    end: datetime
    provisional: bool = Field(description="Read only as zero lines while open: to be re-read.")
    seconds: float


class GapLocationOut(BaseModel):
    location_id: str
    count: int
    seconds: float
    provisional_seconds: float
    days: list[date]


class GapsAnswer(BaseModel):
    now: datetime
    days: int
    count: int
    locations: list[GapLocationOut]
    gaps: list[GapOut]


class RecoverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location_id: str | None = Field(None, max_length=64, description="Absent: every location.")
    days: int = Field(ops_gaps.DEFAULT_DAYS, ge=1, le=ops_gaps.MAX_DAYS)


class RecoveryRunOut(BaseModel):
    location_id: str
    run_id: int
    created: bool = Field(description="False: a recovery of this location was already running.")
    date_from: date
    date_to: date
    gap_days: list[date]


class RecoverAnswer(BaseModel):
    success: bool
    message: str
    runs: list[RecoveryRunOut]


@router.get("", response_model=GapsAnswer, responses=ANSWERS, summary="Sales gaps")
def list_gaps(
    services: Services,
    caller: Reader,
    location: LocationQuery = None,
    days: DaysQuery = ops_gaps.DEFAULT_DAYS,
) -> GapsAnswer:
    """Opening hours of the last ``days`` local days without final sales coverage, per location
    (provisional: read as zero lines while open, to be re-read)."""
    now = services.clock.now()
    with services.read_engine.connect() as conn:
        found = _renamed(
            lambda: ops_gaps.list_gaps(
                conn, services.config, now=now, days=days, location_id=location
            ),
            {"location": "location"},
        )
    summaries = ops_gaps.summarize(found)
    return GapsAnswer(
        now=now,
        days=days,
        count=len(found),
        locations=[
            GapLocationOut(
                location_id=s.location_id,
                count=s.count,
                seconds=s.seconds,
                provisional_seconds=s.provisional_seconds,
                days=list(s.days),
            )
            for s in summaries.values()
        ],
        gaps=[
            GapOut(
                location_id=g.location_id,
                day=g.day,
                start=g.start,
                end=g.end,
                provisional=g.provisional,
                seconds=g.seconds,
            )
            for g in found
        ],
    )


@router.post(
    "/recover",
    response_model=RecoverAnswer,
    status_code=http.HTTP_202_ACCEPTED,
    responses={**ANSWERS, 200: {"model": RecoverAnswer, "description": "Nothing new to start."}},
    summary="Recover sales gaps",
)
def recover(
    response: Response,
    services: Services,
    caller: Triggerer,
    body: Annotated[RecoverBody | None, Body()] = None,
) -> RecoverAnswer:
    """Start a bounded sales backfill (``trigger=recovery``) per location with gaps; a location
    whose recovery is already running gets that run back (``created=false``). 202 when a run
    started, 200 when there was nothing new to start."""
    wanted = body or RecoverBody()
    started = _renamed(
        lambda: recover_gaps(
            services.engine,
            config=services.config,
            settings=services.settings,
            clock=services.clock,
            requested_by=caller.name,
            location_id=wanted.location_id,
            days=wanted.days,
            launch=lambda run_id: launch_or_fail(services, run_id),
            launcher=services.launcher.name,
        ),
        {"location": "location_id"},
    )
    created = [run for run in started if run.created]
    if created:
        with services.engine.begin() as conn:
            audit.record(
                conn,
                actor=caller.name,
                action="gaps.recover",
                now=services.clock.now(),
                target=f"location:{wanted.location_id}" if wanted.location_id else "chain",
                detail={"days": wanted.days, "runs": [run.run_id for run in created]},
            )
    else:
        response.status_code = http.HTTP_200_OK
    return RecoverAnswer(
        success=True, message=_message(started), runs=[_run_out(run) for run in started]
    )


def launch_or_fail(services: ServiceContext, run_id: int) -> None:
    """Hand a run to the launcher; a failed hand-off fails the run (category launch)."""
    reason = launchers.launch_or_fail(
        services.launcher, services.engine, run_id, now=services.clock.now()
    )
    if reason is not None:
        log.error("launch failed", run_id=run_id, reason=reason)


def _renamed(call: Callable[[], T], fields: dict[str, str]) -> T:
    """Run ``call``; a bad input names the API's field rather than the engine's."""
    try:
        return call()
    except BadInputError as exc:
        rule = str(exc).removeprefix(f"{exc.field}: ")
        raise BadInputError(fields.get(exc.field, exc.field), rule) from None


def _message(runs: list[RecoveryRun]) -> str:
    if not runs:
        return "no gaps to recover"
    created = [run for run in runs if run.created]
    running = len(runs) - len(created)
    parts = [f"{len(created)} recovery run(s) started"] if created else []
    if running:
        parts.append(f"{running} already running")
    return "; ".join(parts)


def _run_out(run: RecoveryRun) -> RecoveryRunOut:
    return RecoveryRunOut(
        location_id=run.location_id,
        run_id=run.run_id,
        created=run.created,
        date_from=run.date_from,
        date_to=run.date_to,
        gap_days=list(run.gap_days),
    )
