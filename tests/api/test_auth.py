"""Every route against a declared table of answers: no token, and each scope.

Scopes nest: ``read`` ⊂ ``trigger`` ⊂ ``admin``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from api_support import NOW, Api

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.store import audit, ledger, tokens

NO_TOKEN = None
CALLERS = (NO_TOKEN, "read", "trigger", "admin")

# (method, path) -> expected status for: no token, read, trigger, admin. "{id}" is an existing run.
EXPECTED: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("GET", "/healthz"): (200, 200, 200, 200),
    ("GET", "/readyz"): (200, 200, 200, 200),
    ("POST", "/api/etl/sync"): (401, 403, 202, 202),
    ("POST", "/api/etl/sync/ventas"): (401, 403, 202, 202),
    ("POST", "/api/etl/sync/reconcile"): (401, 403, 202, 202),
    ("GET", "/api/etl/runs"): (401, 200, 200, 200),
    ("GET", "/api/etl/runs/{run_id}"): (401, 200, 200, 200),
    ("GET", "/api/etl/runs/{run_id}/logs"): (401, 200, 200, 200),
    ("POST", "/api/etl/runs/{run_id}/cancel"): (401, 403, 403, 200),
    ("GET", "/api/etl/locations"): (401, 200, 200, 200),
    ("GET", "/api/etl/freshness"): (401, 200, 200, 200),
    ("GET", "/api/etl/gaps"): (401, 200, 200, 200),
    ("POST", "/api/etl/gaps/recover"): (401, 403, 200, 200),  # 200: no gaps, nothing started
    ("GET", "/metrics"): (401, 200, 200, 200),
}
BODIES = {
    "/api/etl/sync": {"ubicacion_id": None},
    "/api/etl/sync/ventas": {"ubicacion_id": None},
    "/api/etl/sync/reconcile": {"ubicacion_id": None},
}
CASES = [
    pytest.param(
        method, path, caller, statuses[i], id=f"{method} {path} as {caller or 'anonymous'}"
    )
    for (method, path), statuses in EXPECTED.items()
    for i, caller in enumerate(CALLERS)
]


def queued_run(api: Api) -> int:
    with api.services.engine.begin() as conn:
        request = RunRequest(job=Job.INVENTORY, trigger=Trigger.CLI, requested_by="cli:test")
        return ledger.create_run(conn, request, now=NOW).run_id


@pytest.mark.parametrize(("method", "path", "caller", "expected"), CASES)
def test_every_route_answers_as_declared_for_each_caller(
    api: Api, method: str, path: str, caller: str | None, expected: int
) -> None:
    url = path.replace("{run_id}", str(queued_run(api))) if "{run_id}" in path else path

    answer = api.client.request(method, url, json=BODIES.get(path), headers=api.auth(caller))

    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    if expected in (401, 403):
        assert answer.json()["success"] is False


def test_the_table_declares_every_route_of_the_app(api: Api) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        for method in operations
    }

    assert routes == set(EXPECTED)


def test_the_published_openapi_and_docs_need_no_token(api: Api) -> None:
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer flx_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "flx_bare", "Bearer x" * 100],
)
def test_an_unknown_or_malformed_token_is_401_and_never_echoed(api: Api, header: str) -> None:
    answer = api.client.get("/api/etl/runs", headers={"Authorization": header})

    assert answer.status_code == 401
    assert "flx_not-a-real-token" not in answer.text


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Bearer garbage", "the bearer token sent is not a fluxion-etl token"),
        ("Bearer flx_not-a-real-token", "the bearer token is unknown or revoked"),
        ("Basic dXNlcjpwYXNz", "a bearer token is required"),
    ],
)
def test_a_401_says_whether_a_token_was_missing_malformed_or_unknown(
    api: Api, header: str, says: str
) -> None:
    answer = api.client.get("/api/etl/runs", headers={"Authorization": header})

    assert answer.status_code == 401
    assert answer.json()["message"].startswith(says)
    assert "garbage" not in answer.text


def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    with api.services.engine.begin() as conn:
        assert tokens.revoke_token(conn, "read", now=NOW)

    answer = api.client.get("/api/etl/runs", headers=api.auth("read"))

    assert answer.status_code == 401
    assert "revoked" in answer.json()["message"]


def test_a_token_records_when_it_was_last_used(api: Api) -> None:
    api.client.get("/api/etl/locations", headers=api.auth("read"))

    with api.services.engine.connect() as conn:
        used = {t.name: t.last_used_at for t in tokens.list_tokens(conn)}
    assert used["read"] == NOW
    assert used["admin"] is None


def test_last_used_is_refreshed_at_most_once_a_minute(api: Api) -> None:
    api.client.get("/api/etl/locations", headers=api.auth("read"))
    api.clock.advance(30)
    api.client.get("/api/etl/locations", headers=api.auth("read"))
    assert last_used(api, "read") == NOW
    api.clock.advance(31)
    api.client.get("/api/etl/locations", headers=api.auth("read"))
    assert last_used(api, "read") == NOW + timedelta(seconds=61)


def last_used(api: Api, name: str) -> datetime | None:
    with api.services.engine.connect() as conn:
        return {t.name: t.last_used_at for t in tokens.list_tokens(conn)}[name]


def test_a_run_and_a_cancel_record_the_token_name(api: Api) -> None:
    run_id = api.client.post(
        "/api/etl/sync", json={"ubicacion_id": None}, headers=api.auth("trigger")
    ).json()["run_id"]

    api.client.post(f"/api/etl/runs/{run_id}/cancel", headers=api.auth("admin"))

    with api.services.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        trail = audit.entries(conn)
    assert run is not None
    assert run.requested_by == "trigger"
    assert [(e.actor, e.action, e.target) for e in trail] == [
        ("admin", "run.cancel", f"run:{run_id}")
    ]
