"""Schema-driven fuzzing (schemathesis) of the published OpenAPI *without* a token: whatever the
input, valid by the schema or not, with no Authorization header or with one of schemathesis' own
random bearer tokens, every operation but the health checks answers 401 with the bearer
challenge (whatever the method or body: a malformed body is not parsed before the token is
checked), never 5xx, and nothing is queued or changed.

Schemathesis' own engine runs, as in tests/api/test_openapi_fuzz.py (its pytest plugin does not
load under pytest 9): the coverage phase (boundary values, missing and wrong-typed fields) and the
fuzzing phase, every response recorded and judged here.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import schemathesis
from api_support import Api
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from sqlalchemy import func, select

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.store import ledger
from fluxion_etl.store.schema import audit_log, runs

OPEN = frozenset({"GET /healthz", "GET /readyz"})


@dataclass(frozen=True)
class Answer:
    operation: str
    method: str
    with_token: bool  # schemathesis' own random bearer tokens; none of them is ours
    status: int
    challenge: str | None
    request: str


def fuzz_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "generation": {"max-examples": 5, "mode": "all", "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "seed": 20260106,
        }
    )


def seed_runs(api: Api, count: int = 3) -> None:
    """A few runs, so generated ids (small integers first) name real ones."""
    with api.services.engine.begin() as conn:
        for _ in range(count):
            ledger.create_run(
                conn, RunRequest(job=Job.SALES, trigger=Trigger.CLI), now=api.clock.now()
            )


def fuzz(api: Api) -> tuple[list[Answer], list[str]]:
    """Every answer schemathesis got, and the engine's own errors."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app, config=fuzz_config())
    answers: list[Answer] = []
    errors: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                answers += _answers(event)
            elif isinstance(event, events.NonFatalError | events.FatalError):
                errors.append(repr(event))
    return answers, errors


def _answers(event: events.ScenarioFinished) -> list[Answer]:
    found = []
    for interaction in event.recorder.interactions.values():
        response = interaction.response
        if response is None:
            continue
        request = interaction.request
        found.append(
            Answer(
                operation=event.recorder.label,
                status=response.status_code,
                challenge=(response.headers.get("www-authenticate") or [None])[0],
                method=request.method,
                with_token="Authorization" in request.headers,
                request=f"{request.method} {request.uri} {request.body!r:.200}",
            )
        )
    return found


def declared(answer: Answer) -> bool:
    """The request used the operation's own method (the coverage phase also tries others)."""
    return answer.operation.startswith(answer.method + " ")


def count(api: Api, table: object) -> int:
    with api.services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_without_a_token_every_operation_answers_401_whatever_the_input(api: Api) -> None:
    seed_runs(api)
    runs_before = count(api, runs)

    answers, errors = fuzz(api)

    assert errors == []
    assert {a.operation for a in answers} == {
        f"{method.upper()} {path}"
        for path, item in api.app.openapi()["paths"].items()
        for method in item
    }, "every published operation was fuzzed"
    wrong = [a for a in answers if a.operation not in OPEN and a.status != 401]
    assert wrong == [], Counter((a.operation, a.status) for a in wrong)
    assert all(a.challenge and a.challenge.startswith("Bearer") for a in answers if a.status == 401)
    assert {a.status for a in answers if a.operation in OPEN and declared(a)} == {200}
    assert {a.status for a in answers if a.operation in OPEN and not declared(a)} <= {405}
    assert {a.with_token for a in answers} == {True, False}, "with and without a header"
    assert len(answers) > 100
    assert count(api, runs) == runs_before, "no run was queued"
    assert count(api, audit_log) == 0, "nothing was changed"
    assert api.launcher.launched == []


def test_the_docs_and_the_schema_are_public(api: Api) -> None:
    for path in ("/docs", "/openapi.json"):
        assert api.client.get(path).status_code == 200
