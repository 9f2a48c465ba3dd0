"""Bad trigger bodies are refused with 422 naming the field and the rule; nothing is queued."""

from __future__ import annotations

import json

import pytest
from api_support import Api
from sqlalchemy import func, select

from fluxion_etl.store.schema import runs

SYNC, SALES = "/api/etl/sync", "/api/etl/sync/ventas"


def run_count(api: Api) -> int:
    with api.services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        (SYNC, {"ubicacion_id": "tienda_99"}, "ubicacion_id", "unknown location 'tienda_99'"),
        (SALES, {"ubicacion_id": "cedi_caracas"}, "ubicacion_id", "has no sales"),
        (SALES, {"fecha_inicio": "2026-1-5"}, "fecha_inicio", "YYYY-MM-DD"),
        (
            SALES,
            {"fecha_inicio": "2026-02-30", "fecha_fin": "2026-03-01"},
            "fecha_inicio",
            "not a calendar date",
        ),
        (SALES, {"fecha_inicio": 20260101}, "fecha_inicio", "YYYY-MM-DD"),
        (SALES, {"fecha_inicio": "2026-01-05T00:00:00"}, "fecha_inicio", "YYYY-MM-DD"),
        (
            SALES,
            {"fecha_inicio": "2026-01-04", "fecha_fin": "2026-01-02"},
            "fecha_inicio",
            "start 2026-01-04 is after end 2026-01-02",
        ),
        (
            SALES,
            {"fecha_inicio": "2025-11-01", "fecha_fin": "2026-01-01"},
            "fecha_inicio",
            "at most 31 per request",
        ),
        (
            SALES,
            {"fecha_inicio": "2026-02-01", "fecha_fin": "2026-02-02"},
            "fecha_inicio",
            "in the future",
        ),
        (SALES, {"fecha_fin": "2026-01-02"}, "fecha_inicio", "required when fecha_fin is given"),
        (
            SALES,
            {"fecha_inicio": "0001-01-01", "fecha_fin": "0001-01-02"},
            "fecha_inicio",
            "before 1990-01-01",
        ),
        (
            SALES,
            {"fecha_inicio": "9999-12-30", "fecha_fin": "2026-01-02"},
            "fecha_inicio",
            "in the future",
        ),
        (SYNC, {"ubicacion_id": "tienda_01\u0000"}, "ubicacion_id", "control character"),
        ("/api/etl/sync/reconcile", {"days": True}, "days", "integer"),
        ("/api/etl/sync/reconcile", {"days": "2"}, "days", "integer"),
        (SYNC, {"ubicacion_id": None, "ubicacion": "x"}, "ubicacion", "unknown field"),
        (
            SALES,
            {"fecha_inicio": "2026-01-01", "fecha_final": "2026-01-02"},
            "fecha_final",
            "unknown field",
        ),
        (SYNC, {"ubicacion_id": 7}, "ubicacion_id", "string"),
        (SYNC, [1, 2], "body", ""),
    ],
)
def test_a_bad_body_is_422_naming_the_field_and_the_rule(
    api: Api, path: str, body: object, field: str, rule: str
) -> None:
    answer = api.client.post(path, json=body, headers=api.auth("trigger"))

    assert answer.status_code == 422
    payload = answer.json()
    assert payload["success"] is False
    assert payload["message"].startswith(f"{field}: ")
    assert rule in payload["message"]
    assert payload["errors"][0]["field"] == field
    assert payload["detail"]  # FastAPI's own detail is kept for generic clients
    assert run_count(api) == 0


def test_malformed_json_is_422(api: Api) -> None:
    answer = api.client.post(
        SYNC,
        content=b'{"ubicacion_id": ',
        headers={**api.auth("trigger"), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    assert answer.json()["success"] is False
    assert answer.json()["errors"][0]["field"] == "body"
    assert "not valid JSON at character 17" in answer.json()["message"]


def test_a_lone_surrogate_is_refused_as_any_bad_location_not_a_crash(api: Api) -> None:
    """``"\\ud800"`` is valid JSON, yet no UTF-8 text: the answer escapes what it echoes."""
    answer = api.client.post(
        SYNC,
        content=b'{"ubicacion_id": "x\\ud800"}',
        headers={**api.auth("trigger"), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "ubicacion_id"
    assert run_count(api) == 0


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def test_a_nan_echoed_in_an_error_answer_is_still_json(api: Api) -> None:
    answer = api.client.post(
        "/api/etl/sync/reconcile",
        content=b'{"days": NaN}',
        headers={**api.auth("trigger"), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422, answer.text
    strict = json.loads(answer.content, parse_constant=_no_constant)  # NaN is not JSON
    assert strict["errors"][0]["field"] == "days"
    assert run_count(api) == 0


def test_a_body_over_the_limit_is_413_as_json(api: Api) -> None:
    huge = b'{"ubicacion_id": "' + b"x" * 70_000 + b'"}'
    headers = {**api.auth("trigger"), "Content-Type": "application/json"}

    answer = api.client.post(SYNC, content=huge, headers=headers)

    assert answer.status_code == 413
    assert answer.json()["success"] is False
    assert run_count(api) == 0


def test_a_streamed_body_over_the_limit_is_413_too(api: Api) -> None:
    def chunks():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"ubicacion_id": "'
        for _ in range(70):
            yield b"x" * 1000
        yield b'"}'

    headers = {**api.auth("trigger"), "Content-Type": "application/json"}
    answer = api.client.post(SYNC, content=chunks(), headers=headers)

    assert answer.status_code == 413
    assert "larger than 65536 bytes" in answer.json()["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("since=2026-01-05T10:00:00", "since"),
        ("limit=0", "limit"),
        ("job=payroll", "job"),
        ("offset=-1", "offset"),
        ("location=tienda_01%00", "location"),
        ("location=tienda_99", "location"),
    ],
)
def test_bad_run_filters_are_422_naming_the_parameter(api: Api, query: str, field: str) -> None:
    answer = api.client.get(f"/api/etl/runs?{query}", headers=api.auth("read"))

    assert answer.status_code == 422
    assert answer.json()["message"].startswith(f"{field}: ")


def test_a_huge_run_id_is_422_not_a_database_error(api: Api) -> None:
    answer = api.client.get("/api/etl/runs/" + "9" * 30, headers=api.auth("read"))

    assert answer.status_code == 422


def test_an_instant_utc_cannot_express_is_422_not_a_crash(api: Api) -> None:
    since = api.client.get(
        "/api/etl/runs", params={"since": "0001-01-01T00:00:00+14:00"}, headers=api.auth("read")
    )
    fire = api.client.post(
        SYNC,
        json=None,
        headers={
            **api.auth("trigger"),
            "X-Fluxion-Schedule": "inventory",
            "X-Fluxion-Scheduled-Time": "0001-01-01T00:00:00+14:00",
        },
    )

    assert (since.status_code, fire.status_code) == (422, 422)
