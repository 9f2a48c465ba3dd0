"""Bearer-token authentication and scope checks.

401 without a (valid, unrevoked) token, 403 with a token whose scope is too small. Answers never
echo the presented token. The token's name is what runs and the audit trail record as the actor.

``BearerRequired`` answers 401 to a request for an API route that carries no bearer token shaped
like ours before the app routes it or reads its body, so that without a token the answer is 401
whatever the method or body (not a 405 or a 422 that the routes' own checks would give first).
``/metrics`` also takes the scrape-only token, which may have any shape: there any bearer passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from anyio import to_thread
from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.lookups import lookups
from fluxion_etl.store import tokens
from fluxion_etl.store.tokens import Scope

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fluxion-etl"'}
MISSING_CREDENTIALS = (
    "a bearer token is required: send 'Authorization: Bearer <token>' "
    "(create one with `fluxion-etl token create --scope SCOPE --name NAME`)"
)
MALFORMED_CREDENTIALS = (
    f"the bearer token sent is not a fluxion-etl token (those start with {tokens.TOKEN_PREFIX!r}): "
    "send the whole token `fluxion-etl token create` printed"
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's name and scope."""

    name: str
    scope: Scope


def authenticate(
    services: ServiceContext, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    """The caller behind ``credentials`` (401 when there is none); a blocking call."""
    secret = _presented(credentials)
    with services.read_engine.connect() as conn:
        info = tokens.verify_token(conn, secret)
    info = _known(info)
    now = services.clock.now()
    if tokens.needs_touch(info, now):
        with services.engine.begin() as conn:
            tokens.touch_token(conn, info.id, now=now)
    return Caller(name=info.name, scope=info.scope)


async def authenticate_shared(
    services: ServiceContext, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    """``authenticate`` on the event loop, the token looked up together with those of concurrent
    requests (``api.lookups``)."""
    info = await lookups(services).token(_presented(credentials))
    return await caller_of(services, info)


async def caller_of(services: ServiceContext, info: tokens.TokenInfo | None) -> Caller:
    """The caller of a token looked up (401 when None); its last use written once a minute per
    process."""
    info = _known(info)
    now = services.clock.now()
    if lookups(services).should_touch(info, now):
        await to_thread.run_sync(_touch, services, info.id, now)
    return Caller(name=info.name, scope=info.scope)


def _presented(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, MISSING_CREDENTIALS, headers=CHALLENGE)
    return credentials.credentials


def _known(info: tokens.TokenInfo | None) -> tokens.TokenInfo:
    if info is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the bearer token is unknown or revoked",
            headers=CHALLENGE,
        )
    return info


def _touch(services: ServiceContext, token_id: int, now: datetime) -> None:
    with services.engine.begin() as conn:
        tokens.touch_token(conn, token_id, now=now)


def authorize(caller: Caller, needed: Scope) -> Caller:
    if not caller.scope.allows(needed):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this call needs a token with scope '{needed.value}' (or higher); "
            f"token '{caller.name}' has '{caller.scope.value}'",
        )
    return caller


def needs_token(path: str) -> bool:
    """The API's work routes; health checks, docs, metrics and the control centre are not."""
    return path.startswith("/api/")


class BearerRequired:
    """ASGI middleware: 401 for an API route requested without a token (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        refusal = _token_refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            answer = {"success": False, "message": refusal, "detail": refusal}
            await JSONResponse(answer, status_code=401, headers=CHALLENGE)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _token_refusal(scope: AsgiScope) -> str | None:
    """Why the request carries no bearer token shaped like ours, or None when it does (or the
    route needs none)."""
    path = scope["path"]
    if not needs_token(path) and path != "/metrics":
        return None
    scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return MISSING_CREDENTIALS
    if path == "/metrics" or tokens.is_well_formed(credentials):
        return None
    return MALFORMED_CREDENTIALS
