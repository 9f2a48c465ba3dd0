"""The trigger calls' fast path (``api.fastpath``) answers exactly as the routes do.

The same sequence of calls goes to two apps over two fresh databases, one with the fast path and
one without; every answer (status, JSON body, the headers that matter) must be the same, and the
plainly well-formed calls must have been answered by the fast path (not handed to the routes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import NOW, FakeLauncher, copied_sqlite, make_services, make_tokens
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from fluxion_etl.api import fastpath
from fluxion_etl.api.app import MAX_BODY_BYTES, create_app
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.store import tokens

SYNC, SALES = "/api/etl/sync", "/api/etl/sync/ventas"
JSON = {"Content-Type": "application/json"}

# (path, raw body, extra headers, token scope or None, answered by the fast path?)
CALLS: list[tuple[str, bytes, dict[str, str], str | None, bool]] = [
    (SYNC, b"", {}, "trigger", True),
    (SYNC, b'{"ubicacion_id": "tienda_01"}', JSON, "trigger", True),
    (SYNC, b'{"ubicacion_id": "tienda_01"}', JSON, "trigger", True),  # busy: 409
    (SYNC, b'{"ubicacion_id": "tienda_02"}', JSON | {"Idempotency-Key": "k1"}, "admin", True),
    (SYNC, b'{"ubicacion_id": "tienda_02"}', JSON | {"Idempotency-Key": "k1"}, "trigger", True),
    (SALES, b'{"ubicacion_id": "tienda_02"}', JSON | {"Idempotency-Key": "k1"}, "trigger", True),
    (SYNC, b'{"ubicacion_id": "nowhere"}', JSON, "trigger", True),  # 422 from the request
    (SYNC, b'{"ubicacion_id": "tienda_03"}', JSON, "read", True),  # 403
    (SYNC, b'{"ubicacion_id": "tienda_03"}', JSON, "revoked", True),  # 401
    (SYNC, b'{"ubicacion_id": "tienda_03"}', JSON, None, False),  # 401 before either
    (SYNC, b'{"ubicacion_id": "tienda_03"}', JSON, "malformed", False),  # 401 before either
    (SALES, b'{"fecha_inicio": "2026-01-02"}', JSON, "trigger", True),
    (SALES, b'{"fecha_inicio": "2026-01-01", "fecha_fin": "2026-01-02"}', JSON, "trigger", True),
    (SALES, b'{"fecha_fin": "2026-01-02"}', JSON, "trigger", True),  # 422 from the request
    (SALES, b'{"fecha_inicio": "02/01/2026"}', JSON, "trigger", False),  # 422 from the model
    (SYNC, b'{"ubicacion_id": "tienda_04", "extra": 1}', JSON, "trigger", False),
    (SYNC, b'{"ubicacion_id": ', JSON, "trigger", False),  # not JSON
    (SYNC, b"null", JSON, "trigger", False),
    (SYNC, b'{"ubicacion_id": "tienda_05"}', {"Content-Type": "text/plain"}, "trigger", False),
    (SYNC, b'{"ubicacion_id": "tienda_05"}', {}, "trigger", False),  # no content type
    (SYNC, b"{}", JSON | {"Idempotency-Key": "has space"}, "trigger", False),
    (SYNC, b"{}", JSON | {"Idempotency-Key": "k" * 181}, "trigger", False),
    (SYNC, b"{}", JSON | {"X-Fluxion-Schedule": "inventory"}, "trigger", False),
    (SYNC, b'{"ubicacion_id": "' + b"x" * MAX_BODY_BYTES + b'"}', JSON, "trigger", False),
    (SYNC, b'{"ubicacion_id": "tienda_06"}', JSON | {"Idempotency-Key": "k2"}, "trigger", True),
]


def _client(engine: Engine, fast: bool) -> tuple[TestClient, dict[str, str]]:
    services = make_services(engine, ManualClock(NOW), FakeLauncher())
    secrets = make_tokens(engine, NOW)
    with engine.begin() as conn:
        revoked = tokens.create_token(conn, name="gone", scope=tokens.Scope.TRIGGER, now=NOW)
        tokens.revoke_token(conn, "gone", now=NOW)
    secrets["revoked"], secrets["malformed"] = revoked.secret, "not-a-token"
    return TestClient(create_app(services.settings, services=services, fast_triggers=fast)), secrets


@pytest.fixture
def second_engine(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Engine]:
    """A second fresh database (the answers do not depend on the dialect; the shared reads are
    tested on both in test_shared_lookups.py)."""
    yield from copied_sqlite(migrated_sqlite, tmp_path / "other.db")


def _answer(client: TestClient, secrets: dict[str, str], call: tuple[Any, ...]) -> tuple[Any, ...]:
    path, body, headers, scope, _ = call
    auth = {} if scope is None else {"Authorization": f"Bearer {secrets[scope]}"}
    answer = client.post(path, content=body, headers=headers | auth)
    wanted = ("content-type", "www-authenticate")
    return answer.status_code, answer.json(), {h: answer.headers.get(h) for h in wanted}


def test_the_fast_path_answers_every_call_as_the_routes_do(
    sqlite_engine: Engine, second_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[bool] = []
    real = fastpath.TriggerFastPath._answer

    async def spied(self: fastpath.TriggerFastPath, *args: Any) -> tuple[int, bytes]:
        try:
            result = await real(self, *args)
        except fastpath.Fallback:
            answered.append(False)
            raise
        except Exception:
            answered.append(True)  # answered by the app's handler for the error
            raise
        answered.append(True)
        return result

    monkeypatch.setattr(fastpath.TriggerFastPath, "_answer", spied)
    fast, fast_secrets = _client(sqlite_engine, fast=True)
    routes, route_secrets = _client(second_engine, fast=False)

    with fast, routes:
        for call in CALLS:
            answered.clear()
            by_fast_path = _answer(fast, fast_secrets, call)
            took_fast_path = answered == [True]
            by_routes = _answer(routes, route_secrets, call)

            assert by_fast_path == by_routes, call
            assert took_fast_path is call[4], (call, answered)
