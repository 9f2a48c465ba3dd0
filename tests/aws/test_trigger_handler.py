"""The trigger function, run as Lambda would run it: a Python with only boto3, its token from
(a stand-in for) Secrets Manager, against a service on loopback answering as the real one does."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from trigger_fakes import (
    SECRET_ARN,
    TOKEN,
    FakeSecrets,
    fire_event,
    invoke,
    make_boto3_only_venv,
    scripted_service,
)
from trigger_fakes import fake_secrets_manager as _fake_secrets


@pytest.fixture(scope="module")
def boto3_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_boto3_only_venv(tmp_path_factory.mktemp("lambda-venv"))


@pytest.fixture
def secrets() -> Iterator[FakeSecrets]:
    with _fake_secrets({SECRET_ARN: TOKEN + "\n"}) as fake:
        yield fake


Answer = Callable[[str, Any], tuple[int, dict[str, Any]]]


def _answer(http_status: int, **fields: Any) -> Answer:
    """Always answer ``http_status`` with the contract's JSON fields."""
    return lambda path, body: (http_status, {"success": 200 <= http_status < 300, **fields})


def test_the_function_needs_nothing_but_the_standard_library_and_boto3(boto3_python: Path) -> None:
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import handler; import fluxion_etl"
    done = subprocess.run(
        [
            str(boto3_python),
            "-I",
            "-c",
            probe,
            str(Path(__file__).parents[2] / "deploy/aws/fluxion_deploy/trigger"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # handler imported fine; only the product itself is missing from this environment
    assert "No module named 'fluxion_etl'" in done.stderr


def test_a_fire_posts_the_contract_body_with_scheduler_headers_and_token(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    with scripted_service(_answer(202, status="running", run_id=7)) as service:
        results = invoke(
            boto3_python,
            [fire_event(), fire_event("sales", "sales", "2026-01-05T14:05:00Z")],
            service_url=service.url,
            secrets_url=secrets.url,
        )

    assert [r["ok"]["run_id"] for r in results] == [7, 7]
    inventory, sales = service.requests
    assert (inventory.path, inventory.body) == ("/api/etl/sync", {"ubicacion_id": None})
    assert (sales.path, sales.body) == ("/api/etl/sync/ventas", {"ubicacion_id": None})
    assert inventory.headers["Authorization"] == f"Bearer {TOKEN}"
    assert inventory.headers["X-Fluxion-Schedule"] == "inventory"
    assert inventory.headers["X-Fluxion-Scheduled-Time"] == "2026-01-05T14:00:00Z"
    assert inventory.headers["Content-Type"] == "application/json"
    assert secrets.calls == ["secretsmanager.GetSecretValue"]  # cached across invocations


def test_a_schedule_of_one_location_names_it(boto3_python: Path, secrets: FakeSecrets) -> None:
    with scripted_service(_answer(202, status="running", run_id=1)) as service:
        invoke(
            boto3_python,
            [fire_event(locations=["tienda_08"])],
            service_url=service.url,
            secrets_url=secrets.url,
        )
    assert service.requests[0].body == {"ubicacion_id": "tienda_08"}


@pytest.mark.parametrize(
    "status",
    ["skipped_disabled", "skipped_inactive_hours", "missed", "duplicate"],
)
def test_fires_answered_as_not_started_succeed(
    boto3_python: Path, secrets: FakeSecrets, status: str
) -> None:
    with scripted_service(_answer(200, status=status, message="why")) as service:
        (result,) = invoke(
            boto3_python, [fire_event()], service_url=service.url, secrets_url=secrets.url
        )
    assert result["ok"]["status"] == status


def test_a_busy_answer_succeeds_and_names_the_running_run(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    with scripted_service(_answer(409, status="busy", run_id=41, message="busy")) as service:
        (result,) = invoke(
            boto3_python, [fire_event()], service_url=service.url, secrets_url=secrets.url
        )
    assert result["ok"]["http_status"] == 409
    assert result["ok"]["run_id"] == 41


def test_a_server_error_raises_so_lambda_retries(boto3_python: Path, secrets: FakeSecrets) -> None:
    with scripted_service(_answer(500, message="database unreachable")) as service:
        (result,) = invoke(
            boto3_python, [fire_event()], service_url=service.url, secrets_url=secrets.url
        )
    assert result == {
        "error": "ServiceUnavailable",
        "message": "the service answered 500: database unreachable",
    }


def test_a_service_not_listening_raises(boto3_python: Path, secrets: FakeSecrets) -> None:
    with scripted_service(_answer(202)) as service:
        closed_url = service.url
    (result,) = invoke(
        boto3_python, [fire_event()], service_url=closed_url, secrets_url=secrets.url
    )
    assert result["error"] == "ServiceUnavailable"
    assert "no answer" in result["message"]


def test_a_service_that_does_not_answer_in_time_raises(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    def slow(path: str, body: Any) -> tuple[int, dict[str, Any]]:
        time.sleep(1.5)
        return 202, {}

    with scripted_service(slow) as service:
        (result,) = invoke(
            boto3_python,
            [fire_event()],
            service_url=service.url,
            secrets_url=secrets.url,
            timeout=0.5,
        )
    assert result["error"] == "ServiceUnavailable"
    assert "timed out" in result["message"]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "a bearer token is required"),
        (403, "scope read cannot trigger"),
        (422, "ubicacion_id: unknown location 'x'"),
    ],
)
def test_refusals_raise_with_the_answers_text(
    boto3_python: Path, secrets: FakeSecrets, status: int, message: str
) -> None:
    with scripted_service(_answer(status, message=message)) as service:
        (result,) = invoke(
            boto3_python, [fire_event()], service_url=service.url, secrets_url=secrets.url
        )
    assert result == {
        "error": "TriggerRejected",
        "message": f"the service refused the fire with {status}: {message}",
    }


def test_a_schedule_of_several_locations_leaves_the_scope_to_the_service(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    with scripted_service(_answer(202, status="running", run_id=1)) as service:
        invoke(
            boto3_python,
            [fire_event(locations=["tienda_01", "tienda_02"])],
            service_url=service.url,
            secrets_url=secrets.url,
        )
    assert service.requests[0].body == {"ubicacion_id": None}


def test_a_malformed_event_raises_without_calling_the_service(
    boto3_python: Path, secrets: FakeSecrets
) -> None:
    with scripted_service(_answer(202)) as service:
        (no_time, unknown_job) = invoke(
            boto3_python,
            [
                {"schedule": "inventory", "job": "inventory"},
                fire_event(job="prices"),
            ],
            service_url=service.url,
            secrets_url=secrets.url,
        )
    assert no_time["error"] == "ValueError"
    assert "lacks scheduled_time" in no_time["message"]
    assert "unknown job 'prices'" in unknown_job["message"]
    assert service.requests == []
