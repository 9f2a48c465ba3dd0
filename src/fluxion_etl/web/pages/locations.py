"""Locations: the configuration as loaded, and the last ``locations check`` against KLK.

    GET  /locations           every location: branch, warehouses, zone, opening hours, jobs
    POST /locations/check     compare the configuration with KLK's warehouse lists now (trigger)

The check's result is kept in the audit trail (action ``locations.check``, the problems in its
detail), so the page shows the latest one, who ran it and when, without a table of its own.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fluxion_etl.config import WEEKDAYS
from fluxion_etl.domain.records import Location, OpeningSpan
from fluxion_etl.engine.check import check_locations
from fluxion_etl.engine.freshness import jobs_of
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.store import audit
from fluxion_etl.web.deps import Operator, Viewer
from fluxion_etl.web.i18n import Message
from fluxion_etl.web.render import redirect, render, services_of

router = APIRouter(include_in_schema=False)

CHECK_ACTION = "locations.check"


def opening_summary(location: Location) -> list[tuple[str, str, str]]:
    """Opening hours grouped by runs of days with equal hours: ``(first day, last day, hours)``,
    e.g. ``("mon", "sat", "07:00-21:00"), ("sun", "sun", "08:00-14:00")``; ``""`` is closed."""
    texts = [_spans(spans) for spans in location.opening_hours.by_weekday]
    groups: list[tuple[int, int, str]] = []
    for index, text in enumerate(texts):
        if groups and groups[-1][2] == text:
            groups[-1] = (groups[-1][0], index, text)
        else:
            groups.append((index, index, text))
    return [(WEEKDAYS[a], WEEKDAYS[b], text) for a, b, text in groups]


def _spans(spans: tuple[OpeningSpan, ...]) -> str:
    if not spans:
        return ""
    return ", ".join(
        f"{s.opens:%H:%M}-{'24:00' if s.ends_at_midnight else f'{s.closes:%H:%M}'}" for s in spans
    )


@router.get("/locations")
def locations_page(request: Request, user: Viewer) -> Response:
    services = services_of(request)
    with services.read_engine.connect() as conn:
        found = audit.entries(conn, action=CHECK_ACTION, limit=1)
    return render(
        request,
        "locations.html",
        {
            "locations": services.config.locations,
            "source": services.config.source,
            "hours": {loc.id: opening_summary(loc) for loc in services.config.locations},
            "jobs": {loc.id: jobs_of(loc) for loc in services.config.locations},
            "check": found[0] if found else None,
        },
    )


@router.post("/locations/check")
def check(request: Request, user: Operator) -> Response:
    services = services_of(request)
    with KlkClient.from_settings(services.settings) as klk:
        problems = check_locations(services.config, klk)
    with services.engine.begin() as conn:
        audit.record(
            conn,
            actor=user.name,
            action=CHECK_ACTION,
            target="locations",
            now=services.clock.now(),
            detail={
                "ok": not problems,
                "locations": len(services.config.locations),
                "problems": problems,
                "via": "web",
            },
        )
    key = "flash.check_failed" if problems else "flash.check_ok"
    kind = "error" if problems else "success"
    return redirect(request, "/locations", Message(key, {"count": len(problems)}, kind))
