"""Starting runs from a page: the API's own path (validate, refuse when busy, queue, launch).

Pages start runs through ``api.trigger.start_run``, so a run started by a click is the same as one
started by ``POST /api/etl/sync``: same checks, same keys, ``requested_by`` the token's name. The
click is also written to the audit trail, and its outcome becomes the message the next page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import status as http

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.trigger import start_run
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.errors import BadInputError
from fluxion_etl.launchers import launch_or_fail
from fluxion_etl.store import audit
from fluxion_etl.web.auth import WebUser
from fluxion_etl.web.i18n import Message


@dataclass(frozen=True, slots=True)
class Started:
    """What a click started: the run (None when nothing started) and the message to show."""

    run_id: int | None
    message: Message


def start(
    services: ServiceContext,
    request: RunRequest,
    user: WebUser,
    *,
    action: str,
    detail: dict[str, Any] | None = None,
) -> Started:
    """Start ``request``; audit it as ``action`` by ``user`` when a run was created."""
    try:
        outcome = start_run(services, request)
    except BadInputError as exc:
        return Started(None, Message("flash.refused", {"reason": str(exc)}, "error"))
    if outcome.http_status == http.HTTP_409_CONFLICT:
        return Started(None, Message("flash.busy", {"run_id": outcome.run_id}, "error"))
    assert outcome.run_id is not None
    with services.engine.begin() as conn:
        audit.record(
            conn,
            actor=user.name,
            action=action,
            target=f"run:{outcome.run_id}",
            now=services.clock.now(),
            detail={
                "job": request.job.value,
                "locations": list(request.locations) if request.locations else None,
                "via": "web",
                **(detail or {}),
            },
        )
    if outcome.http_status == http.HTTP_503_SERVICE_UNAVAILABLE:
        return Started(
            outcome.run_id, Message("flash.launch_failed", {"run_id": outcome.run_id}, "error")
        )
    return Started(
        outcome.run_id, Message("flash.run_started", {"run_id": outcome.run_id}, "success")
    )


def launch(services: ServiceContext, run_id: int) -> None:
    """Hand a queued run to the launcher; a failed hand-off fails the run (category ``launch``),
    as the API does, so it never waits queued for nobody."""
    launch_or_fail(services.launcher, services.engine, run_id, now=services.clock.now())
