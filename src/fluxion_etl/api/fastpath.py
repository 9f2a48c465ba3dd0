"""The trigger calls' fast path: ``POST /api/etl/sync`` and ``/sync/ventas`` answered without
FastAPI's per-request machinery (routing, dependency solving, request and response models built
twice), which costs several times what the trigger itself does once its reads are shared.

It handles a call only when the call is plainly well formed: one bearer token, a JSON body (or
none) that the route's own body model accepts, at most one ``Idempotency-Key`` matching the route's
pattern, and no scheduler headers (fires take the routes). Anything else, including every
validation error, goes to the routes unchanged (the body it read replayed), so the routes alone
word the 422s. What it does answer goes through the same steps as the routes: the same token check
and scope (``security``), the same request (``routes.sync``), ``trigger.start_api_run``, the same
answer model; an error is answered by the app's own exception handler for it (401, 403, 413, 422,
503, 500). Tests call every route both ways and compare (tests/api/test_fastpath.py).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.lookups import lookups
from fluxion_etl.api.routes import sync
from fluxion_etl.api.schemas import SalesSyncAnswer, SalesSyncBody, SyncAnswer, SyncBody
from fluxion_etl.api.security import authorize, caller_of
from fluxion_etl.api.trigger import api_key, start_api_run
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.store.tokens import Scope as TokenScope
from fluxion_etl.store.tokens import is_well_formed

RequestBuilder = Callable[[ServiceContext, Any, str, str | None], tuple[RunRequest, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class FastRoute:
    body: type[BaseModel]
    build: RequestBuilder
    answer: type[SyncAnswer]


ROUTES = {
    "/api/etl/sync": FastRoute(SyncBody, sync.inventory_request, SyncAnswer),
    "/api/etl/sync/ventas": FastRoute(SalesSyncBody, sync.sales_request, SalesSyncAnswer),
}
HEADERS = {
    b"authorization": "authorization",
    b"content-type": "content-type",
    b"content-length": "content-length",
    b"idempotency-key": "key",
    b"x-fluxion-schedule": "fire",
    b"x-fluxion-scheduled-time": "fire",
}
KEY = re.compile(sync.KEY_PATTERN)
JSON = {b"application/json", b"application/json; charset=utf-8"}


class Fallback(Exception):
    """The call is not plainly well formed: the routes answer it."""


class TriggerFastPath:
    """In front of the whole app (``FluxionApi``) for the two trigger routes: ``app`` is the rest
    of it (its middleware, then FastAPI's routing), which answers whatever this does not."""

    def __init__(self, app: ASGIApp, api: FastAPI, max_body: int) -> None:
        self.app, self.api, self.max_body = app, api, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            headers = _headers(scope, self.max_body)
        except Fallback:
            await self.app(scope, receive, send)
            return
        seen: list[Message] = []
        try:
            body = await _read_body(receive, self.max_body, seen)
            status, payload = await self._answer(route, headers, body)
        except Fallback:
            await self.app(scope, _replaying(seen, receive), send)
            return
        except Exception as exc:
            await self._error(scope, receive, send, exc)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(
        self, route: FastRoute, headers: dict[str, str], raw: bytes
    ) -> tuple[int, bytes]:
        body = _body(route, raw, "content-type" in headers)
        key = headers.get("key")
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or secret != secret.strip() or not is_well_formed(secret):
            raise Fallback  # the app's BearerRequired words the 401
        services: ServiceContext = self.api.state.services
        # the token, the key's run and the holders in one shared round trip
        reads = await lookups(services).trigger_reads(secret, None if key is None else api_key(key))
        caller = authorize(await caller_of(services, reads.token), TokenScope.TRIGGER)
        request, echoed = route.build(services, body, caller.name, key)
        outcome = await start_api_run(services, request, reads)
        answer = route.answer(**sync.answer_fields(outcome), **echoed)
        return outcome.http_status, answer.model_dump_json().encode()

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """The app's handler for ``exc`` answers it, as it would have on the route."""
        handler = None
        for kind in type(exc).__mro__:
            handler = self.api.exception_handlers.get(kind)
            if handler is not None:
                break
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def _headers(scope: Scope, max_body: int) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        field = HEADERS.get(name)
        if field is None:
            continue
        if field in found or field == "fire":
            raise Fallback  # a repeated header, or a scheduler fire
        if field == "content-type" and value.lower() not in JSON:
            raise Fallback
        if field == "content-length" and (not value.isdigit() or int(value) > max_body):
            raise Fallback  # the app's BodySizeLimit answers 413
        found[field] = value.decode("latin-1")
    key = found.get("key")
    if key is not None and (len(key) > sync.KEY_MAX_LENGTH or not KEY.match(key)):
        raise Fallback
    return found


async def _read_body(receive: Receive, max_body: int, seen: list[Message]) -> bytes:
    """The whole body; every message received is kept in ``seen`` to be replayed on fallback."""
    size = 0
    while True:
        message = await receive()
        seen.append(message)
        if message["type"] != "http.request":
            raise Fallback  # the client left: the app sees the same
        size += len(message.get("body", b""))
        if size > max_body:
            raise Fallback  # the app's BodySizeLimit answers 413
        if not message.get("more_body", False):
            return b"".join(m.get("body", b"") for m in seen)


def _body(route: FastRoute, raw: bytes, typed: bool) -> Any:
    if not raw:
        return route.body()
    if not typed:
        raise Fallback  # a body without a content type: the routes decide what it is
    try:
        return route.body.model_validate_json(raw)
    except ValidationError:
        raise Fallback from None


def _replaying(seen: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already received delivered again first."""
    pending = iter(seen)

    async def replay() -> Message:
        return next(pending, None) or await receive()

    return replay
