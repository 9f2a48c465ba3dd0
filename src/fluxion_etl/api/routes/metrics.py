"""``GET /metrics``: the Prometheus text exposition (``ops.metrics``).

A scraper sends a ``read`` token, or the scrape-only token set in ``FLUXION_METRICS_TOKEN`` (so
the monitoring system need not hold a token that can read the whole API).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from fluxion_etl.api.deps import Credentials, Services
from fluxion_etl.api.schemas import ErrorAnswer
from fluxion_etl.api.security import authenticate, authorize
from fluxion_etl.store.tokens import Scope

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        401: {"model": ErrorAnswer, "description": "No valid bearer token."},
        403: {"model": ErrorAnswer, "description": "The token's scope is too small."},
    },
    summary="Prometheus metrics",
)
def metrics(services: Services, credentials: Credentials) -> Response:
    """Runs, durations, rows, KLK requests, freshness, gaps, fires and alerts."""
    if not _is_scrape_token(services.settings.metrics_token, credentials):
        authorize(authenticate(services, credentials), Scope.READ)
    assert services.metrics is not None
    body, content_type = services.metrics.render()
    return Response(content=body, media_type=content_type)


def _is_scrape_token(
    expected: SecretStr | None, credentials: HTTPAuthorizationCredentials | None
) -> bool:
    if expected is None or credentials is None or credentials.scheme.lower() != "bearer":
        return False
    secret = expected.get_secret_value().encode()
    return bool(secret) and hmac.compare_digest(credentials.credentials.encode(), secret)
