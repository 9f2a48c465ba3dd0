"""Bearer-token authentication and scope checks.

401 without a (valid, unrevoked) token, 403 with a token whose scope is too small. Answers never
echo the presented token. The token's name is what runs and the audit trail record as the actor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.store import tokens
from fluxion_etl.store.tokens import Scope

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fluxion-etl"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's name and scope."""

    name: str
    scope: Scope


def authenticate(
    services: ServiceContext, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required: send 'Authorization: Bearer <token>' "
            "(create one with `fluxion-etl token create --scope SCOPE --name NAME`)",
            headers=CHALLENGE,
        )
    with services.read_engine.connect() as conn:
        info = tokens.verify_token(conn, credentials.credentials)
    if info is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the bearer token is unknown or revoked",
            headers=CHALLENGE,
        )
    now = services.clock.now()
    if tokens.needs_touch(info, now):
        with services.engine.begin() as conn:
            tokens.touch_token(conn, info.id, now=now)
    return Caller(name=info.name, scope=info.scope)


def authorize(caller: Caller, needed: Scope) -> Caller:
    if not caller.scope.allows(needed):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this call needs a token with scope '{needed.value}' (or higher); "
            f"token '{caller.name}' has '{caller.scope.value}'",
        )
    return caller
