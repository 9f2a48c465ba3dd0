"""Schema-driven fuzzing (schemathesis) of the published OpenAPI with an admin token: whatever the
input, valid by the schema or not, no route answers 5xx.

Schemathesis' own engine runs, as its CLI would: the coverage phase (boundary values of every
constraint, missing and wrong-typed fields) and the fuzzing phase (random valid and invalid cases,
bounded to a few dozen per operation so the test stays fast), with only the ``not_a_server_error``
check enabled.
"""

from __future__ import annotations

import warnings

import schemathesis
from api_support import Api
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.store import ledger


def published_operations(api: Api) -> set[str]:
    """Every operation the OpenAPI publishes: a new route is fuzzed without editing this test."""
    paths = api.app.openapi()["paths"]
    return {f"{method.upper()} {path}" for path, item in paths.items() for method in item}


def fuzz_config(api: Api) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": api.auth("admin"),
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "generation": {"max-examples": 20, "mode": "all", "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "seed": 20260105,
        }
    )


def seed_runs(api: Api, count: int = 3) -> None:
    """A few runs in the ledger, so generated ids (small integers first) can hit something."""
    with api.services.engine.begin() as conn:
        for _ in range(count):
            request = RunRequest(job=Job.SALES, trigger=Trigger.CLI)
            ledger.create_run(conn, request, now=api.clock.now())


def test_no_input_makes_any_route_answer_5xx(api: Api) -> None:
    seed_runs(api)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app, config=fuzz_config(api))
    tested: set[str] = set()
    failures: list[str] = []
    errors: list[str] = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished) and event.recorder.interactions:
                tested.add(event.recorder.label)
                failures += _failed_checks(event)
            elif isinstance(event, events.NonFatalError | events.FatalError):
                errors.append(repr(event))

    assert errors == []
    assert failures == []
    assert tested == published_operations(api)


def _failed_checks(event: events.ScenarioFinished) -> list[str]:
    return [
        f"{event.recorder.label}: {check.name}: {info.code_sample if info else ''}"
        for checks in event.recorder.checks.values()
        for check in checks
        if check.status is not Status.SUCCESS
        for info in [check.failure_info]
    ]
