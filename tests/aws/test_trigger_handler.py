"""The trigger function, run as Lambda runs it: a Python with only boto3, its token from (a
stand-in for) Secrets Manager, against a service on loopback that answers each schedule as the
real service can. One execution environment serves every fire of the module, as Lambda reuses
one: the token is fetched once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from trigger_fakes import (
    HANDLER_DIR,
    SECRET_ARN,
    TOKEN,
    FakeSecrets,
    Recorded,
    fake_secrets_manager,
    fire_event,
    invoke,
    make_boto3_only_venv,
    scripted_service,
)

# Schedule name → how the service answers its fire (the real service's answers, SPEC §6).
ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "inventory": (202, {"status": "running", "run_id": 7}),
    "sales": (202, {"status": "running", "run_id": 8}),
    "skipped_disabled": (200, {"status": "skipped_disabled", "message": "disabled"}),
    "skipped_inactive_hours": (200, {"status": "skipped_inactive_hours", "message": "closed"}),
    "missed": (200, {"status": "missed", "message": "too old"}),
    "duplicate": (200, {"status": "duplicate", "run_id": 7, "message": "already started"}),
    "busy": (409, {"status": "busy", "run_id": 41, "message": "every location is busy"}),
    "broken": (500, {"message": "database unreachable"}),
    "no-token": (401, {"message": "a bearer token is required"}),
    "read-token": (403, {"message": "scope read cannot trigger"}),
    "unknown": (422, {"message": "X-Fluxion-Schedule: unknown schedule 'unknown'"}),
}
ONE_STORE = "bosque"
SEVERAL_STORES = "two-stores"


def _answer(request: Recorded) -> tuple[int, dict[str, Any]]:
    status, fields = ANSWERS.get(request.headers["X-Fluxion-Schedule"], (202, {"run_id": 1}))
    return status, {"success": 200 <= status < 300, **fields}


@dataclass
class Conversation:
    results: dict[str, dict[str, Any]]
    requests: dict[str, Recorded]
    secrets: FakeSecrets


@pytest.fixture(scope="module")
def boto3_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_boto3_only_venv(tmp_path_factory.mktemp("lambda-venv"))


@pytest.fixture(scope="module")
def secrets() -> Iterator[FakeSecrets]:
    with fake_secrets_manager({SECRET_ARN: TOKEN + "\n"}) as fake:
        yield fake


@pytest.fixture(scope="module")
def conversation(boto3_python: Path, secrets: FakeSecrets) -> Conversation:
    """Every scripted fire, in one execution environment."""
    events = [fire_event(name) for name in ANSWERS]
    events[1] = fire_event("sales", "sales", "2026-01-05T14:05:00Z")
    events += [
        fire_event(ONE_STORE, "sales", locations=["tienda_08"]),
        fire_event(SEVERAL_STORES, "sales", locations=["tienda_01", "tienda_02"]),
        {"schedule": "no-time", "job": "inventory"},
        fire_event("prices", "prices"),
    ]
    with scripted_service(_answer) as service:
        results = invoke(boto3_python, events, service_url=service.url, secrets_url=secrets.url)
    names = [str(e["schedule"]) for e in events]
    requests = {r.headers["X-Fluxion-Schedule"]: r for r in service.requests}
    return Conversation(dict(zip(names, results, strict=True)), requests, secrets)


def test_the_function_needs_nothing_but_the_standard_library_and_boto3(boto3_python: Path) -> None:
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import handler; import fluxion_etl"
    done = subprocess.run(
        [str(boto3_python), "-I", "-c", probe, str(HANDLER_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    # handler imported fine; only the product itself is missing from this environment
    assert "No module named 'fluxion_etl'" in done.stderr


def test_a_fire_posts_the_contract_body_with_scheduler_headers_and_token(
    conversation: Conversation,
) -> None:
    inventory, sales = conversation.requests["inventory"], conversation.requests["sales"]
    assert (inventory.path, inventory.body) == ("/api/etl/sync", {"ubicacion_id": None})
    assert (sales.path, sales.body) == ("/api/etl/sync/ventas", {"ubicacion_id": None})
    assert inventory.headers["Authorization"] == f"Bearer {TOKEN}"
    assert inventory.headers["X-Fluxion-Scheduled-Time"] == "2026-01-05T14:00:00Z"
    assert sales.headers["X-Fluxion-Scheduled-Time"] == "2026-01-05T14:05:00Z"
    assert inventory.headers["Content-Type"] == "application/json"
    assert conversation.results["inventory"]["ok"]["run_id"] == 7


def test_the_token_is_read_once_per_execution_environment(conversation: Conversation) -> None:
    assert conversation.secrets.calls == ["secretsmanager.GetSecretValue"]


def test_a_schedule_of_one_location_names_it_and_of_several_leaves_it_to_the_service(
    conversation: Conversation,
) -> None:
    assert conversation.requests[ONE_STORE].body == {"ubicacion_id": "tienda_08"}
    assert conversation.requests[SEVERAL_STORES].body == {"ubicacion_id": None}


@pytest.mark.parametrize(
    "outcome", ["skipped_disabled", "skipped_inactive_hours", "missed", "duplicate"]
)
def test_fires_answered_as_not_started_succeed(conversation: Conversation, outcome: str) -> None:
    assert conversation.results[outcome]["ok"]["status"] == outcome


def test_a_busy_answer_succeeds_and_names_the_running_run(conversation: Conversation) -> None:
    busy = conversation.results["busy"]["ok"]
    assert (busy["http_status"], busy["run_id"]) == (409, 41)


def test_a_server_error_raises_so_lambda_retries(conversation: Conversation) -> None:
    assert conversation.results["broken"] == {
        "error": "ServiceUnavailable",
        "message": "the service answered 500: database unreachable",
    }


@pytest.mark.parametrize("name", ["no-token", "read-token", "unknown"])
def test_refusals_raise_with_the_answers_text(conversation: Conversation, name: str) -> None:
    status, fields = ANSWERS[name]
    assert conversation.results[name] == {
        "error": "TriggerRejected",
        "message": f"the service refused the fire with {status}: {fields['message']}",
    }


def test_a_malformed_event_raises_without_calling_the_service(conversation: Conversation) -> None:
    no_time, unknown_job = conversation.results["no-time"], conversation.results["prices"]
    assert (no_time["error"], unknown_job["error"]) == ("ValueError", "ValueError")
    assert "lacks scheduled_time" in no_time["message"]
    assert "unknown job 'prices'" in unknown_job["message"]
    assert {"no-time", "prices"}.isdisjoint(conversation.requests)


def test_a_service_not_listening_or_too_slow_raises(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    def slow(request: Recorded) -> tuple[int, dict[str, Any]]:
        time.sleep(1.5)
        return 202, {}

    with scripted_service(slow) as service:
        closed = "http://127.0.0.1:9"  # discard port: nothing listens there
        (refused,) = invoke(
            boto3_python, [fire_event()], service_url=closed, secrets_url=secrets.url
        )
        (late,) = invoke(
            boto3_python,
            [fire_event()],
            service_url=service.url,
            secrets_url=secrets.url,
            timeout=0.5,
        )
    assert refused["error"] == "ServiceUnavailable"
    assert "no answer" in refused["message"]
    assert late["error"] == "ServiceUnavailable"
    assert "timed out" in late["message"]
