"""Health checks, the only routes without a token: ``/healthz`` (the process answers) and
``/readyz`` (it can do its work: database reachable, schema current, launcher and scheduler alive).

A load balancer restarts on ``/healthz`` and routes on ``/readyz``, so a database outage makes the
service unready without getting it killed.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi import status as http
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.deps import Services
from fluxion_etl.api.schemas import HealthAnswer, ReadyAnswer
from fluxion_etl.store.db import current_revision, head_revision

router = APIRouter(tags=["health"])

OK = "ok"


@router.get("/healthz", response_model=HealthAnswer)
def healthz() -> HealthAnswer:
    """Alive: the process answers HTTP."""
    return HealthAnswer(status="alive")


@router.get(
    "/readyz",
    response_model=ReadyAnswer,
    responses={503: {"model": ReadyAnswer, "description": "A check failed; `checks` names it."}},
)
def readyz(response: Response, services: Services) -> ReadyAnswer:
    """Ready: every check is ``ok``; otherwise 503 and the failing checks say what is wrong."""
    checks = {"database": _database(services)}
    checks["migrations"] = _migrations(services) if checks["database"] == OK else "unknown"
    checks["launcher"] = OK if _alive(services.launcher.alive) else "not alive"
    if services.scheduler_alive is not None:
        checks["scheduler"] = OK if _alive(services.scheduler_alive) else "not alive"
    ready = all(value == OK for value in checks.values())
    if not ready:
        response.status_code = http.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyAnswer(ready=ready, checks=checks)


def _database(services: ServiceContext) -> str:
    try:
        with services.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"unreachable ({type(exc).__name__})"
    return OK


def _migrations(services: ServiceContext) -> str:
    try:
        current = current_revision(services.read_engine)
    except SQLAlchemyError as exc:
        return f"unknown ({type(exc).__name__})"
    head = head_revision()
    if current == head:
        return OK
    return f"schema at {current or 'nothing'}, code needs {head}: run `fluxion-etl db upgrade`"


def _alive(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:  # a probe that raises is a part that is not alive
        return False
