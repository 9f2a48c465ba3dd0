"""The HTTP API: ``create_app(settings, services=...)`` builds it; nothing exists at import time.

Every error is answered as JSON ``{"success": false, "message": ...}``: 401/403 for tokens, 404,
413 for a body over the limit, 422 naming the field and the rule, 503 when the database cannot be
reached, 500 without a stack trace (the trace goes to the service log). Answers never echo tokens.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import structlog
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from fluxion_etl import __version__
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.fastpath import ROUTES, TriggerFastPath
from fluxion_etl.api.limits import BodySizeLimit
from fluxion_etl.api.lookups import close_lookups, open_lookups
from fluxion_etl.api.routes import gaps, health, locations, metrics, runs, sync
from fluxion_etl.api.security import BearerRequired
from fluxion_etl.errors import BadInputError, SchemaNotReadyError
from fluxion_etl.settings import Settings
from fluxion_etl.web.routes import error_page, is_web_path, mount_web

log = structlog.get_logger("fluxion.api")

MAX_BODY_BYTES = 64 * 1024
# Threads for the sync routes. Each holds at most one pooled connection and the engine's pool has
# at most 10 (``store.db``, shared with inline runs), so more threads than that only wait for a
# connection while contending for the GIL: under 200 concurrent triggers, 10 threads spent about
# a quarter less CPU per request than anyio's default of 40 (bench/service.py).
API_THREADS = 10
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)

DESCRIPTION = """Keeps inventory and sales of every store fresh from KLK.

Every route except `/healthz` and `/readyz` needs `Authorization: Bearer <token>`; create tokens
with `fluxion-etl token create --scope read|trigger|admin --name NAME`. Scopes: `read` reads,
`trigger` also starts runs, `admin` also cancels them.
"""


def create_app(
    settings: Settings, *, services: ServiceContext, fast_triggers: bool = True
) -> FastAPI:
    """The API over ``services``; the caller opens and closes what ``services`` holds.

    ``fast_triggers``: answer plainly well-formed trigger calls before FastAPI's routing
    (``api.fastpath``); off, the routes answer every call (the tests compare the two)."""
    app = FluxionApi(
        title="fluxion-etl",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    if fast_triggers:
        rest = partial(FastAPI.__call__, app)
        app.fast_path = TriggerFastPath(rest, api=app, max_body=MAX_BODY_BYTES)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(BearerRequired)  # outermost: no token, nothing read
    app.state.services = services
    app.state.settings = settings
    for module in (health, sync, runs, locations, gaps, metrics):
        app.include_router(module.router)
    mount_web(app, settings)
    _add_error_handlers(app)
    return app


class FluxionApi(FastAPI):
    """FastAPI, with the trigger calls' fast path (``api.fastpath``) in front of everything: the
    calls it answers skip the middleware stack and the routing, the rest go through them."""

    fast_path: TriggerFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and scope["type"] == "http" and scope["path"] in ROUTES:
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Sync routes run in anyio's thread pool (40 threads by default, see ``API_THREADS``). The
    shared reads (``api.lookups``) are made and their connection opened before the first call,
    so that the first burst of triggers does not wait for them, and closed at the end."""
    to_thread.current_default_thread_limiter().total_tokens = API_THREADS
    try:
        try:
            await open_lookups(app.state.services)
        except UNAVAILABLE as exc:  # the first calls connect (or answer 503); /readyz tells
            log.warning("database unavailable at start", error=type(exc).__name__)
        yield
    finally:
        await close_lookups(app.state.services)


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(BadInputError, _bad_input)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(SchemaNotReadyError, _schema_not_ready)
    for exc_type in UNAVAILABLE:
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error answer may echo what the caller
    sent, and a lone surrogate (``"\\ud800"`` is valid JSON) has no UTF-8 form."""

    def render(self, content: Any) -> bytes:
        # allow_nan=False: a NaN the caller sent and the answer echoes is no JSON; it is spelled
        # as text instead (``_finite``).
        text = json.dumps(
            _finite(content), ensure_ascii=True, separators=(",", ":"), allow_nan=False
        )
        return text.encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinities) replaced by its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _answer(status: int, message: str, **extra: Any) -> JSONResponse:
    body = {"success": False, "message": message, **extra}
    return _AsciiJSONResponse(body, status_code=status)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(err) for err in exc.errors()]
    message = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
    if is_web_path(request.url.path):
        return error_page(request, 422, message)
    detail = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    return _answer(422, message, errors=errors, detail=detail)


def _field_error(err: Any) -> dict[str, str]:
    """FastAPI's error as (field, rule): ``body.fecha_fin`` → ``fecha_fin``, friendlier rules."""
    loc = [str(part) for part in err.get("loc", ())]
    if len(loc) > 1 and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    rule = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":  # loc: ("body", character position)
        where = f" at character {loc[0]}" if loc and loc[0].isdigit() else ""
        error = (err.get("ctx") or {}).get("error", "")
        return {"field": "body", "rule": f"not valid JSON{where}: {error}".rstrip(": ")}
    if err.get("type") == "extra_forbidden":
        rule = "unknown field: remove it or check its spelling"
    elif err.get("type") == "missing":
        rule = "required"
    return {"field": ".".join(loc) or "body", "rule": rule.removeprefix("Value error, ")}


async def _bad_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BadInputError)
    rule = str(exc).removeprefix(f"{exc.field}: ")
    errors = [{"field": exc.field, "rule": rule}]
    return _answer(422, str(exc), errors=errors, detail=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405) and is_web_path(request.url.path):
        return error_page(request, exc.status_code)
    answer = _answer(exc.status_code, str(exc.detail), detail=exc.detail)
    answer.headers.update(exc.headers or {})
    return answer


async def _schema_not_ready(request: Request, exc: Exception) -> JSONResponse:
    return _answer(503, str(exc))


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable", path=request.url.path, error=type(exc).__name__)
    return _answer(
        503,
        "the database cannot be used right now (unreachable, or its schema is not ready): "
        "the call did nothing. Retry later; /readyz says what is wrong.",
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", path=request.url.path, exc_info=exc)
    return _answer(500, "internal error: the call may not have completed; see the service log")
