"""Schedules: cron, zone, active hours, next fire times, last outcome; switch on/off, fire now.

    GET  /schedules                   every schedule and the recent fires, times in its zone
    POST /schedules/{name}/enabled    switch it on or off (admin; recorded with the token's name)
    POST /schedules/{name}/trigger    run its job and scope now (trigger; a manual fire)

A manual fire is recorded like the CLI's ``schedules trigger`` (source ``manual``) and starts its
run through the API's path, so a busy location refuses it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from fluxion_etl.domain.schedules import FireSource, ScheduleDef, manual_request, upcoming_fires
from fluxion_etl.domain.states import FireOutcome, Trigger
from fluxion_etl.errors import FluxionError
from fluxion_etl.store import schedules
from fluxion_etl.store.schedules import FireRow, StoredSchedule
from fluxion_etl.web import actions
from fluxion_etl.web.deps import Administrator, Operator, PageNotFound, Viewer
from fluxion_etl.web.i18n import Message
from fluxion_etl.web.render import redirect, render, services_of

router = APIRouter(include_in_schema=False)

NEXT_FIRES = 3
RECENT_FIRES = 30


@dataclass(frozen=True, slots=True)
class ScheduleView:
    stored: StoredSchedule
    upcoming: list[datetime]  # UTC
    last: FireRow | None

    @property
    def definition(self) -> ScheduleDef:
        return self.stored.definition


@router.get("/schedules")
def schedules_page(request: Request, user: Viewer) -> Response:
    services = services_of(request)
    now = services.clock.now()
    with services.read_engine.connect() as conn:
        stored = schedules.list_schedules(conn)
        views = [
            ScheduleView(
                s,
                upcoming_fires(s.definition, now, NEXT_FIRES) if s.definition.enabled else [],
                _last(schedules.list_fires(conn, schedule_name=s.name, limit=1)),
            )
            for s in stored
        ]
        recent = schedules.list_fires(conn, limit=RECENT_FIRES)
    zones = {s.name: s.definition.timezone for s in stored}
    return render(
        request,
        "schedules.html",
        {
            "schedules": views,
            "recent": recent,
            "zones": zones,
            "mode": services.settings.scheduler,
            "default_zone": "America/Caracas",
        },
    )


def _last(fires: list[FireRow]) -> FireRow | None:
    return fires[0] if fires else None


def _schedule(request: Request, name: str) -> StoredSchedule:
    services = services_of(request)
    with services.read_engine.connect() as conn:
        stored = schedules.get_schedule(conn, name)
    if stored is None:
        raise PageNotFound(Message("error.no_schedule", {"name": name[:64]}))
    return stored


@router.post("/schedules/{name}/enabled")
def set_enabled(
    request: Request,
    name: str,
    user: Administrator,
    enabled: Annotated[str, Form()] = "",
) -> Response:
    services = services_of(request)
    _schedule(request, name)
    if enabled not in ("true", "false"):  # the page's buttons send one or the other
        reason = f"enabled={enabled[:20]!r}: send true or false"
        return redirect(
            request, "/schedules", Message("flash.refused", {"reason": reason}, "error")
        )
    wanted = enabled == "true"
    try:
        with services.engine.begin() as conn:
            schedules.update_schedule(
                conn,
                name,
                enabled=wanted,
                by=user.name,
                now=services.clock.now(),
                mode=services.settings.scheduler,
            )
    except FluxionError as exc:
        return redirect(
            request, "/schedules", Message("flash.refused", {"reason": str(exc)}, "error")
        )
    key = "flash.schedule_enabled" if wanted else "flash.schedule_disabled"
    return redirect(request, "/schedules", Message(key, {"name": name}, "success"))


@router.post("/schedules/{name}/trigger")
def trigger_now(request: Request, name: str, user: Operator) -> Response:
    services = services_of(request)
    definition = _schedule(request, name).definition
    run_request = replace(
        manual_request(definition, services.clock.now(), user.name), trigger=Trigger.API
    )
    started = actions.start(
        services, run_request, user, action="schedule.trigger", detail={"schedule": name}
    )
    if started.run_id is None:
        return redirect(request, "/schedules", started.message)
    assert run_request.scheduled_for is not None
    with services.engine.begin() as conn:
        schedules.record_fire(
            conn,
            schedule_name=name,
            scheduled_for=run_request.scheduled_for,
            outcome=FireOutcome.STARTED,
            run_id=started.run_id,
            source=FireSource.MANUAL,
            now=services.clock.now(),
            detail=f"triggered by {user.name} (control centre)",
        )
    return redirect(request, f"/runs/{started.run_id}", started.message)
