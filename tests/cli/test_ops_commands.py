"""CLI parity with the API: ``token create|list|revoke``, ``runs logs [--follow]``, ``runs cancel``
and ``freshness [--json]``, against a real SQLite database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from fluxion_etl.cli import ops, run
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.errors import BadInputError
from fluxion_etl.store import audit, ledger, sync_state, tokens
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.runlogs import save_raw_payload

Invoke = Callable[..., Result]
Database = tuple[str, Engine]
NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)  # Monday 10:00 in Caracas: stores are open


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    """The ``run`` and ``ops`` commands on one app (once per module: ``runs_app`` is shared)."""
    app = typer.Typer()
    run.register(app)
    ops.register(app)
    return app


@pytest.fixture
def database(sqlite_url: str) -> Iterator[tuple[str, Engine]]:
    engine = create_db_engine(sqlite_url)
    upgrade(engine)
    try:
        yield sqlite_url, engine
    finally:
        engine.dispose()


@pytest.fixture
def invoke(cli: typer.Typer, database: tuple[str, Engine]) -> Invoke:
    url, _ = database
    # A scaled clock running a billion times slower than real time: frozen at NOW for the test.
    env = {
        "FLUXION_DATABASE_URL": url,
        "FLUXION_CLOCK": f"scaled:{NOW.isoformat()}@{time.time()}x1e-9",
    }

    def call(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env)

    return call


def queued_run(engine: Engine) -> int:
    with engine.begin() as conn:
        request = RunRequest(job=Job.SALES, trigger=Trigger.API, requested_by="x")
        return ledger.create_run(conn, request, now=NOW).run_id


def test_token_create_prints_the_token_once_and_list_never_shows_it(
    invoke: Invoke, database: Database
) -> None:
    _, engine = database

    created = invoke("token", "create", "--scope", "trigger", "--name", "eventbridge")
    listed = invoke("token", "list", "--json")

    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("flx_")
    with engine.connect() as conn:
        info = tokens.verify_token(conn, secret)
        trail = audit.entries(conn)
    assert info is not None
    assert (info.name, info.scope.value) == ("eventbridge", "trigger")
    assert secret not in listed.stdout
    assert [(t["name"], t["scope"], t["active"]) for t in json.loads(listed.stdout)] == [
        ("eventbridge", "trigger", True)
    ]
    assert trail[0].action == "token.create"
    assert trail[0].actor.startswith("cli:")


def test_token_revoke_refuses_the_token_from_then_on(invoke: Invoke, database: Database) -> None:
    _, engine = database
    secret = invoke("token", "create", "--scope", "read", "--name", "ana").stdout.strip()

    revoked = invoke("token", "revoke", "ana")
    again = invoke("token", "revoke", "ana")

    assert revoked.exit_code == 0
    with engine.connect() as conn:
        assert tokens.verify_token(conn, secret) is None
    assert isinstance(again.exception, BadInputError)


def test_an_unknown_scope_is_bad_input(invoke: Invoke) -> None:
    result = invoke("token", "create", "--scope", "root", "--name", "x")

    assert isinstance(result.exception, BadInputError)
    assert "read, trigger, admin" in str(result.exception)


def test_runs_logs_prints_the_kept_lines(invoke: Invoke, database: Database) -> None:
    _, engine = database
    run_id = queued_run(engine)
    with engine.begin() as conn:
        ledger.append_log(conn, run_id, now=NOW, level="info", event="run started", max_lines=10)
        ledger.append_log(
            conn,
            run_id,
            now=NOW,
            level="error",
            event="location failed",
            max_lines=10,
            location_id="tienda_01",
            fields={"category": "timeout"},
        )

    result = invoke("runs", "logs", str(run_id))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "run started" in lines[0]
    assert "[tienda_01] location failed category=timeout" in lines[1]


def test_runs_logs_follow_returns_once_the_run_ends(invoke: Invoke, database: Database) -> None:
    _, engine = database
    run_id = queued_run(engine)

    def finish_later() -> None:
        time.sleep(0.3)
        with engine.begin() as conn:
            ledger.append_log(
                conn, run_id, now=NOW, level="info", event="run finished", max_lines=10
            )
            ledger.finish_run(conn, run_id, RunStatus.SUCCEEDED, now=NOW)

    worker = threading.Thread(target=finish_later)
    worker.start()
    result = invoke("runs", "logs", str(run_id), "--follow", "--poll", "0.05")
    worker.join()

    assert result.exit_code == 0, result.output
    assert "run finished" in result.stdout
    assert result.stdout.rstrip().endswith(f"run {run_id} succeeded")


def test_runs_logs_of_an_unknown_run_is_bad_input(invoke: Invoke) -> None:
    assert isinstance(invoke("runs", "logs", "999").exception, BadInputError)


def test_runs_cancel_cancels_a_queued_run_and_exit_1_for_an_ended_one(
    invoke: Invoke, database: Database
) -> None:
    _, engine = database
    queued, ended = queued_run(engine), queued_run(engine)
    with engine.begin() as conn:
        ledger.finish_run(conn, ended, RunStatus.SUCCEEDED, now=NOW)

    cancelled = invoke("runs", "cancel", str(queued))
    refused = invoke("runs", "cancel", str(ended))

    assert cancelled.exit_code == 0
    assert "cancelled" in cancelled.stdout
    assert refused.exit_code == 1
    with engine.connect() as conn:
        run_row = ledger.get_run(conn, queued)
        trail = audit.entries(conn, action="run.cancel")
    assert run_row is not None
    assert run_row.status is RunStatus.CANCELLED
    assert [e.target for e in trail] == [f"run:{queued}"]


def test_freshness_json_exits_1_while_anything_is_stale(invoke: Invoke, database: Database) -> None:
    _, engine = database
    with engine.begin() as conn:
        sync_state.record_success(conn, job="inventory", location_id="tienda_01", run_id=1, now=NOW)

    result = invoke("freshness", "--json")

    assert result.exit_code == 1
    verdicts = {(v["location_id"], v["job"]): v for v in json.loads(result.stdout)}
    assert verdicts[("tienda_01", "inventory")]["stale"] is False
    assert verdicts[("tienda_01", "sales")]["stale"] is True  # never synced
    assert ("cedi_caracas", "sales") not in verdicts  # a distribution centre has no sales


def test_freshness_exits_0_when_everything_is_fresh(invoke: Invoke, database: Database) -> None:
    _, engine = database
    listed = json.loads(invoke("freshness", "--json").stdout)
    with engine.begin() as conn:
        for verdict in listed:
            sync_state.record_success(
                conn, job=verdict["job"], location_id=verdict["location_id"], run_id=1, now=NOW
            )

    result = invoke("freshness")

    assert result.exit_code == 0, result.output
    assert f"all {len(listed)} fresh" in result.stdout


def test_a_filter_on_an_unknown_location_is_bad_input_not_an_empty_list(
    invoke: Invoke, database: Database
) -> None:
    """A mistyped id would list nothing and look like good news; a location removed from the
    configuration keeps its history."""
    _, engine = database
    run_id = queued_run(engine)
    with engine.begin() as conn:
        ledger.create_items(conn, run_id, ["tienda_closed"])

    result = invoke("runs", "list", "--location", "tienda_99")

    assert isinstance(result.exception, BadInputError)
    assert str(result.exception).startswith("--location: unknown location 'tienda_99'; known: ")
    assert invoke("runs", "list", "--location", "tienda_01").exit_code == 0
    removed = invoke("runs", "list", "--location", "tienda_closed", "--json")
    assert removed.exit_code == 0, removed.output
    assert [r["id"] for r in json.loads(removed.stdout)] == [run_id]


def test_runs_payloads_lists_and_saves_the_kept_answers(
    invoke: Invoke, database: Database, tmp_path: Path
) -> None:
    _, engine = database
    body = b'{"error": "No se pudo conectar"}'
    with engine.begin() as conn:
        request = RunRequest(job=Job.SALES, trigger=Trigger.API, requested_by="x")
        run_id = ledger.create_run(conn, request, now=NOW).run_id
        save_raw_payload(
            conn, run_id=run_id, location_id="tienda_03", call="ventas", category="error_body",
            body=body, now=NOW, max_bytes=10,
        )  # fmt: skip

    listed = invoke("runs", "payloads", str(run_id))
    saved = invoke("runs", "payloads", str(run_id), "--save", str(tmp_path / "kept"))
    none = invoke("runs", "payloads", "999")

    assert listed.exit_code == 0, listed.output
    assert f"tienda_03 ventas error_body {NOW.isoformat(timespec='seconds')}" in listed.stdout
    assert f"{len(body)} bytes, first 10 kept" in listed.stdout
    files = list((tmp_path / "kept").iterdir())
    assert [f.read_bytes() for f in files] == [body[:10]]
    assert str(files[0]) in saved.stdout
    assert isinstance(none.exception, BadInputError)


def test_runs_list_shows_times_in_the_chains_zone(invoke: Invoke, database: Database) -> None:
    """SPEC §4.7: stored in UTC, displayed in the location's zone (the chain's, for runs)."""
    _, engine = database
    queued_run(engine)  # created at NOW, 14:00 UTC

    listed = invoke("runs", "list")

    assert listed.exit_code == 0, listed.output
    assert "times in America/Caracas" in listed.stdout
    assert "2026-01-05 10:00:00 -0400" in listed.stdout
