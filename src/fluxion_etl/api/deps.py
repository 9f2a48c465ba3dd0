"""Dependencies of the routes, as ``Annotated`` aliases so signatures read like sentences:
``def cancel(run_id: RunId, services: Services, caller: Admin)``.

FastAPI runs every plain ``def`` dependency in its thread pool, one hand-off per dependency and
request; these are ``async def``: the ones without I/O run on the event loop at no cost, and
``get_caller`` looks the token up together with concurrent requests' (``api.lookups``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.security import Caller, authenticate_shared, authorize
from fluxion_etl.store.tokens import Scope

# Ids are bounded so a fuzzed 30-digit id is a 422, not a database overflow.
MAX_ID = 2**53

bearer = HTTPBearer(auto_error=False, description="A token from `fluxion-etl token create`.")


async def get_services(request: Request) -> ServiceContext:
    services: ServiceContext = request.app.state.services
    return services


Services = Annotated[ServiceContext, Depends(get_services)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_caller(services: Services, credentials: Credentials) -> Caller:
    return await authenticate_shared(services, credentials)


def require(scope: Scope) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        return authorize(caller, scope)

    check.__name__ = f"require_{scope.value}"
    return check


Reader = Annotated[Caller, Depends(require(Scope.READ))]
Triggerer = Annotated[Caller, Depends(require(Scope.TRIGGER))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN))]

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]
