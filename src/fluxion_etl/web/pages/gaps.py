"""Gaps: a calendar of sales coverage per location and day, the open gaps, and their recovery.

    GET  /gaps                        calendar of the last weeks, gaps listed per location
    POST /gaps/recover                recover one gap's day, one location's gaps, or all (trigger)

Recovery is ``ops.recover``: an ordinary sales backfill (trigger ``recovery``) of the gap days,
through the one runner; a location whose recovery is already in flight is not submitted twice.
A location that still fails keeps its gap, and the page keeps showing it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import WEEKDAYS
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.errors import BadInputError
from fluxion_etl.ops.recover import recover_gaps
from fluxion_etl.store import audit
from fluxion_etl.web import actions, gapview
from fluxion_etl.web.auth import WebUser
from fluxion_etl.web.deps import Operator, Viewer
from fluxion_etl.web.i18n import Message
from fluxion_etl.web.render import redirect, render, services_of

router = APIRouter(include_in_schema=False)


@router.get("/gaps")
def gaps_page(request: Request, user: Viewer, days: int = gapview.CALENDAR_DAYS) -> Response:
    services = services_of(request)
    now = services.clock.now()
    days = max(7, min(days, gapview.MAX_CALENDAR_DAYS))
    with services.read_engine.connect() as conn:
        gaps = gapview.open_gaps(services, conn, now)
        rows = gapview.calendar(services, conn, now=now, days=days, gaps=gaps)
    by_location: dict[str, list[object]] = {}
    for gap in gaps:
        by_location.setdefault(gap.location_id, []).append(gap)
    return render(
        request,
        "gaps.html",
        {
            "rows": rows,
            "gaps": gaps,
            "by_location": by_location,
            "days": days,
            "config": services.config,
            "gap_days": services.settings.gap_days,
            "day_list": rows[0].days if rows else [],
            "weekdays": WEEKDAYS,
        },
    )


@router.post("/gaps/recover")
def recover(
    request: Request,
    user: Operator,
    location: Annotated[str, Form()] = "",
    day: Annotated[str, Form()] = "",
) -> Response:
    services = services_of(request)
    if location and day:
        return _recover_day(request, services, user, location, day)
    try:
        submitted = recover_gaps(
            services.engine,
            config=services.config,
            settings=services.settings,
            clock=services.clock,
            requested_by=user.name,
            location_id=location or None,
            days=services.settings.gap_days,
            launch=lambda run_id: actions.launch(services, run_id),
            launcher=services.launcher.name,
        )
    except BadInputError as exc:
        return redirect(request, "/gaps", Message("flash.refused", {"reason": str(exc)}, "error"))
    if not submitted:
        return redirect(request, "/gaps", Message("flash.no_gaps"))
    with services.engine.begin() as conn:
        audit.record(
            conn,
            actor=user.name,
            action="gaps.recover",
            target=f"location:{location}" if location else "gaps:all",
            now=services.clock.now(),
            detail={
                "via": "web",
                "runs": [
                    {"location": r.location_id, "run_id": r.run_id, "created": r.created}
                    for r in submitted
                ],
            },
        )
    new = [r.run_id for r in submitted if r.created]
    message = Message(
        "flash.recovery_started",
        {"count": len(new), "runs": ", ".join(str(r.run_id) for r in submitted)},
        "success",
    )
    return redirect(request, f"/runs/{new[0]}" if len(submitted) == 1 and new else "/gaps", message)


def _recover_day(
    request: Request, services: ServiceContext, user: WebUser, location: str, day: str
) -> Response:
    """One gap: a recovery run of that local day of that location."""
    try:
        when = date.fromisoformat(day)
    except ValueError:
        return redirect(request, "/gaps", Message("flash.bad_day", kind="error"))
    run_request = RunRequest(
        job=Job.SALES,
        trigger=Trigger.RECOVERY,
        locations=(location,),
        date_from=when,
        date_to=when,
        requested_by=user.name,
        params={"gap_days": [when.isoformat()]},
    )
    started = actions.start(
        services, run_request, user, action="gaps.recover", detail={"day": when.isoformat()}
    )
    return redirect(
        request, f"/runs/{started.run_id}" if started.run_id else "/gaps", started.message
    )
