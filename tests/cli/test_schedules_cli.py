"""``fluxion-etl schedules``, ``fires`` and ``export``: the operator's view of schedules as data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from fluxion_etl.cli.schedules import register
from fluxion_etl.errors import (
    BadInputError,
    CronError,
    InexpressibleError,
    ScheduleChangeRefusedError,
)
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.ledger import list_runs

MONDAY_10 = "2026-01-05T10:00:00.500000-04:00"


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Stand-in for the product's root command."""

    register(app)
    return app


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("FLUXION_DATABASE_URL", url)
    monkeypatch.setenv("FLUXION_CLOCK", f"scaled:{MONDAY_10}@{time.time()!r}x1.0")
    monkeypatch.delenv("FLUXION_SCHEDULER", raising=False)
    monkeypatch.delenv("FLUXION_CONFIG", raising=False)
    return url


def run(*args: str) -> Result:
    return CliRunner().invoke(cli(), list(args))


def listed(database: str) -> dict[str, dict]:  # type: ignore[type-arg]
    result = run("schedules", "list", "--json")
    assert result.exit_code == 0, result.output
    return {s["name"]: s for s in json.loads(result.stdout)}


def test_a_fresh_database_lists_the_default_schedules_with_their_next_fires(database: str) -> None:
    schedules = listed(database)
    assert {name: s["cron"] for name, s in schedules.items()} == {
        "inventory": "0,30 * * * *",
        "sales": "5,35 * * * *",
        "sales-reconcile": "0 3 * * *",
    }
    assert schedules["inventory"]["next_fires"][0] == "2026-01-05T10:30:00-04:00"
    assert schedules["sales-reconcile"]["next_fires"][0] == "2026-01-06T03:00:00-04:00"
    assert {s["updated_by"] for s in schedules.values()} == {"config"}


def test_disable_and_enable_apply_to_the_stored_schedule(database: str) -> None:
    assert "sales: disabled" in run("schedules", "disable", "sales").stdout
    assert listed(database)["sales"]["enabled"] is False
    assert listed(database)["sales"]["updated_by"].startswith("cli:")
    assert "sales: enabled" in run("schedules", "enable", "sales").stdout
    assert "unchanged" in run("schedules", "enable", "sales").stdout


def test_next_lists_the_coming_times_in_the_schedules_zone(database: str) -> None:
    result = run("schedules", "next", "inventory", "-n", "3")
    assert result.stdout.splitlines() == [
        "Mon 2026-01-05 10:30 -04",
        "Mon 2026-01-05 11:00 -04",
        "Mon 2026-01-05 11:30 -04",
    ]
    run("schedules", "set", "inventory", "--timezone", "UTC", "--cron", "0 12 * * *")
    utc = run("schedules", "next", "inventory", "-n", "1", "--json")
    assert json.loads(utc.stdout) == ["2026-01-06T12:00:00+00:00"]


def test_active_hours_are_set_and_checked_against_opening_hours(database: str) -> None:
    result = run("schedules", "set", "sales", "--active-hours", "07:00-21:40")
    assert "active 07:00-21:40" in result.stdout
    check = run("schedules", "check")
    assert check.exit_code == 1
    assert "tienda_08 (BOSQUE)" in check.stdout
    run("schedules", "set", "sales", "--no-active-hours")
    assert run("schedules", "check").exit_code == 0


def test_an_invalid_change_is_refused_with_the_reason(database: str) -> None:
    result = run("schedules", "set", "sales", "--cron", "0 0 * * * *")
    assert isinstance(result.exception, CronError)
    assert "seconds" in str(result.exception)
    assert listed(database)["sales"]["cron"] == "5,35 * * * *"


def test_external_mode_refuses_a_cron_change_with_the_redeploy_command(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUXION_SCHEDULER", "external")
    result = run("schedules", "set", "sales", "--cron", "0 * * * *")
    assert isinstance(result.exception, ScheduleChangeRefusedError)
    assert "cdk deploy" in str(result.exception)
    assert run("schedules", "disable", "sales").exit_code == 0


def test_a_fire_starts_once_and_is_listed(database: str) -> None:
    first = run("schedules", "fire", "inventory", "--no-wait")
    again = run("schedules", "fire", "inventory", "--no-wait")
    assert "inventory at Mon 2026-01-05 10:00 -04: started run 1" in first.stdout
    assert "duplicate run 1" in again.stdout
    fires = json.loads(run("fires", "list", "--json").stdout)
    assert [(f["schedule"], f["outcome"], f["source"]) for f in fires] == [
        ("inventory", "started", "external"),
    ]


def test_check_warns_of_a_disabled_schedule(database: str) -> None:
    assert run("schedules", "check").exit_code == 0
    run("schedules", "disable", "sales")

    checked = run("schedules", "check")

    assert checked.exit_code == 1
    assert "warning: schedule sales (sales) is disabled" in checked.stdout
    assert "schedules enable sales" in checked.stdout


def test_a_fire_at_a_time_the_schedule_does_not_fire_is_refused(database: str) -> None:
    off_cron = run("schedules", "fire", "inventory", "--at", "2026-01-05T09:31:00-04:00")
    future = run("schedules", "fire", "inventory", "--at", "2031-01-05T10:00:00-04:00")

    for result, why in ((off_cron, "not a fire time"), (future, "in the future")):
        assert isinstance(result.exception, BadInputError)
        assert str(result.exception).startswith("--at: ")
        assert why in str(result.exception)
    assert json.loads(run("fires", "list", "--json").stdout) == []


def test_a_manual_trigger_queues_a_cli_run_recorded_as_a_manual_fire(database: str) -> None:
    result = run("schedules", "trigger", "sales-reconcile", "--no-wait")
    assert "sales-reconcile: run 1 (reconcile) queued" in result.stdout
    engine = create_db_engine(database)
    with engine.connect() as conn:
        (queued,) = list_runs(conn)
    engine.dispose()
    assert (queued.trigger.value, queued.job.value, queued.status.value) == (
        "cli",
        "reconcile",
        "queued",
    )
    fires = json.loads(run("fires", "list", "--outcome", "started", "--json").stdout)
    assert fires[0]["source"] == "manual"


def test_export_eventbridge_json_and_the_refusal_of_an_inexpressible_schedule(
    database: str,
) -> None:
    exported = json.loads(run("export", "eventbridge", "--json").stdout)
    assert [(e["name"], e["expression"]) for e in exported] == [
        ("inventory", "cron(0,30 * * * ? *)"),
        ("sales", "cron(5,35 * * * ? *)"),
        ("sales-reconcile", "cron(0 3 * * ? *)"),
    ]
    run("schedules", "set", "sales-reconcile", "--cron", "0 3 1 * 1")
    refused = run("export", "eventbridge")
    assert isinstance(refused.exception, InexpressibleError)
    assert "both day-of-month and day-of-week" in str(refused.exception)


def test_export_crontab_in_the_machine_zone(database: str) -> None:
    result = run("export", "crontab", "--machine-zone", "UTC", "--command", "/usr/bin/fluxion-etl")
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "0,30 * * * * /usr/bin/fluxion-etl schedules fire inventory",
        "5,35 * * * * /usr/bin/fluxion-etl schedules fire sales",
        "0 7 * * * /usr/bin/fluxion-etl schedules fire sales-reconcile",
    ]
    assert "shifted +4 h to the machine zone UTC" in result.stdout
