"""The run ledger over HTTP: list, one run with its locations, its logs, and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import status as http
from pydantic import AfterValidator

from fluxion_etl.api.deps import MAX_ID, Admin, Reader, RunId, Services
from fluxion_etl.api.schemas import (
    CancelAnswer,
    Counters,
    ErrorAnswer,
    ItemOut,
    LogLine,
    LogsAnswer,
    RunDetail,
    RunOut,
    RunsPage,
    Timings,
    UtcInstant,
    printable,
)
from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.store import audit, ledger
from fluxion_etl.store.ledger import ItemRow, RunRow

router = APIRouter(prefix="/api/etl/runs", tags=["runs"])

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "No valid bearer token."},
    403: {"model": ErrorAnswer, "description": "The token's scope is too small."},
    404: {"model": ErrorAnswer, "description": "No such run."},
    422: {"model": ErrorAnswer, "description": "A parameter is wrong."},
    503: {"model": ErrorAnswer, "description": "The database is not reachable."},
}


@router.get("", response_model=RunsPage, responses=ANSWERS, summary="Runs, newest first")
def list_runs(
    *,
    services: Services,
    caller: Reader,
    job: Job | None = None,
    status: RunStatus | None = None,
    location: Annotated[
        str | None, Query(max_length=64, description="A location id."), AfterValidator(printable)
    ] = None,
    trigger: Trigger | None = None,
    since: Annotated[
        UtcInstant | None, Query(description="Created at or after (ISO 8601, with offset).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RunsPage:
    with services.read_engine.connect() as conn:
        ledger.check_location_filter(conn, services.config, location, "location")
        rows = ledger.list_runs(
            conn,
            job=job,
            status=status,
            location_id=location,
            trigger=trigger,
            since=since,
            limit=limit + 1,
            offset=offset,
        )
    more = len(rows) > limit
    return RunsPage(
        runs=[run_out(r) for r in rows[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


@router.get("/{run_id}", response_model=RunDetail, responses=ANSWERS, summary="One run")
def get_run(run_id: RunId, services: Services, caller: Reader) -> RunDetail:
    """Its locations with counters, phase timings and errors."""
    with services.read_engine.connect() as conn:
        run = _found(ledger.get_run(conn, run_id), run_id)
        items = ledger.get_items(conn, run_id)
    totals = sum((i.counters for i in items), ItemCounters())
    return RunDetail(
        **run_out(run).model_dump(), items=[item_out(i) for i in items], totals=_counters(totals)
    )


@router.get("/{run_id}/logs", response_model=LogsAnswer, responses=ANSWERS, summary="A run's log")
def get_logs(
    run_id: RunId,
    services: Services,
    caller: Reader,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID, description="Last line id seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LogsAnswer:
    with services.read_engine.connect() as conn:
        run = _found(ledger.get_run(conn, run_id), run_id)
        lines = ledger.read_logs(conn, run_id, after_id=after_id, limit=limit)
    last = lines[-1].id if lines else after_id
    return LogsAnswer(
        run_id=run_id,
        run_status=run.status,
        lines=[LogLine(**_plain(line)) for line in lines],
        next_after_id=last,
        finished=run.status.is_final and len(lines) < limit,
    )


@router.post(
    "/{run_id}/cancel",
    response_model=CancelAnswer,
    responses={**ANSWERS, 409: {"model": CancelAnswer, "description": "The run already ended."}},
    summary="Cancel a run",
)
def cancel_run(
    run_id: RunId, response: Response, services: Services, caller: Admin
) -> CancelAnswer:
    """A queued run is cancelled at once; a running one starts no more locations (those it is
    loading finish or roll back whole). A run that already ended answers 409."""
    now = services.clock.now()
    with services.engine.begin() as conn:
        before = _found(ledger.get_run(conn, run_id), run_id)
        after = ledger.request_cancel(conn, run_id, by=caller.name, now=now)
        assert after is not None
        if not before.status.is_final:
            audit.record(
                conn,
                actor=caller.name,
                action="run.cancel",
                target=f"run:{run_id}",
                now=now,
                detail={"status_before": before.status.value, "status_after": after.status.value},
            )
    return _cancel_answer(before, after, response)


def _cancel_answer(before: RunRow, after: RunRow, response: Response) -> CancelAnswer:
    if before.status.is_final:
        response.status_code = (
            http.HTTP_200_OK if before.status is RunStatus.CANCELLED else http.HTTP_409_CONFLICT
        )
        return CancelAnswer(
            success=before.status is RunStatus.CANCELLED,
            message=f"run {after.id} already ended: {after.status.value}",
            run_id=after.id,
            run_status=after.status,
            cancel_requested=after.cancel_requested,
        )
    message = (
        f"run {after.id} cancelled before it started"
        if after.status is RunStatus.CANCELLED
        else f"run {after.id} starts no more locations; those loading finish"
    )
    return CancelAnswer(
        success=True,
        message=message,
        run_id=after.id,
        run_status=after.status,
        cancel_requested=after.cancel_requested or after.status is RunStatus.CANCELLED,
    )


def _found(run: RunRow | None, run_id: int) -> RunRow:
    if run is None:
        raise HTTPException(http.HTTP_404_NOT_FOUND, f"no run {run_id}")
    return run


def run_out(run: RunRow) -> RunOut:
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    return RunOut(
        **{name: getattr(run, name) for name in RunOut.model_fields if hasattr(run, name)},
        duration_seconds=duration,
    )


def item_out(item: ItemRow) -> ItemOut:
    return ItemOut(
        location_id=item.location_id,
        status=item.status,
        counters=_counters(item.counters),
        timings=Timings(
            extract_ms=item.extract_ms, transform_ms=item.transform_ms, load_ms=item.load_ms
        ),
        windows=item.windows,
        started_at=item.started_at,
        finished_at=item.finished_at,
        error_category=item.error_category,
        error_phase=item.error_phase,
        error_message=item.error_message,
    )


def _counters(counters: ItemCounters) -> Counters:
    return Counters(**{name: getattr(counters, name) for name in ItemCounters.__dataclass_fields__})


def _plain(line: ledger.LogRow) -> dict[str, Any]:
    return {name: getattr(line, name) for name in LogLine.model_fields}
