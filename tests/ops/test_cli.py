"""``gaps list|recover`` and ``alerts list|messages|test`` on a real SQLite database and the
simulator, through the registered command-line app."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
import typer
from ops_support import TODAY, Chain, alerts_toml, local, simulated_chain, webhook_receiver
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from fluxion_etl.cli import gaps
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.sim.topology import chain_config_toml

YESTERDAY = TODAY - timedelta(days=1)
Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    gaps.register(app)
    return app


@pytest.fixture
def chain(sqlite_engine: Engine) -> Iterator[Chain]:
    """tienda_02's yesterday was read as empty: a provisional gap."""
    with simulated_chain(sqlite_engine, start=local(TODAY, 10)) as chain:
        chain.fault("sales@tienda_02:empty_sales")
        chain.run(Job.SALES, trigger=Trigger.BACKFILL, date_from=YESTERDAY, date_to=YESTERDAY)
        chain.plan.clear()
        chain.run(Job.SALES, trigger=Trigger.BACKFILL, date_from=TODAY, date_to=TODAY)
        yield chain


def invoker(cli: typer.Typer, chain: Chain, tmp_path: Path, alerts: str = "") -> Invoke:
    config = tmp_path / "chain.toml"
    config.write_text(chain_config_toml(chain.world.locations) + "\n" + alerts, "utf-8")
    env = {
        "FLUXION_DATABASE_URL": chain.engine.url.render_as_string(hide_password=False),
        "FLUXION_KLK_BASE_URL": chain.url,
        "FLUXION_CONFIG": str(config),
        # a scaled clock a million times slower than real time: the chain's simulated now
        "FLUXION_CLOCK": f"scaled:{chain.clock.now().isoformat()}@{time.time()}x1e-6",
    }

    def call(*args: str) -> Result:
        try:
            return CliRunner().invoke(cli, list(args), env=env)
        finally:
            structlog.reset_defaults()  # the command pointed logging at the runner's stream

    return call


def test_gaps_list_shows_the_gaps_and_recover_fills_them(
    cli: typer.Typer, chain: Chain, tmp_path: Path
) -> None:
    invoke = invoker(cli, chain, tmp_path)

    listed = invoke("gaps", "list", "--json")
    assert listed.exit_code == 1, listed.output
    [gap] = json.loads(listed.stdout)
    assert (gap["location_id"], gap["day"], gap["provisional"]) == (
        "tienda_02",
        YESTERDAY.isoformat(),
        True,
    )

    recovered = invoke("gaps", "recover", "--location", "tienda_02")
    assert recovered.exit_code == 0, recovered.output
    assert f"re-reads {YESTERDAY}..{YESTERDAY}: succeeded" in recovered.stdout
    assert "no gaps left" in recovered.stdout

    again = invoke("gaps", "list")
    assert again.exit_code == 0, again.output
    assert "no gaps" in again.stdout


def test_gaps_recover_exits_1_when_the_location_still_fails(
    cli: typer.Typer, chain: Chain, tmp_path: Path
) -> None:
    chain.fault("sales@tienda_02:http_500")

    result = invoker(cli, chain, tmp_path)("gaps", "recover")

    assert result.exit_code == 1, result.output
    assert ": failed" in result.stdout
    assert "1 gap(s) left" in result.stdout


def test_gaps_list_refuses_an_unknown_location(
    cli: typer.Typer, chain: Chain, tmp_path: Path
) -> None:
    result = invoker(cli, chain, tmp_path)("gaps", "list", "--location", "tienda_99")

    assert result.exit_code != 0
    assert "unknown location 'tienda_99'" in str(result.exception)


def test_alerts_list_and_a_channel_test(cli: typer.Typer, chain: Chain, tmp_path: Path) -> None:
    with webhook_receiver() as (url, received):
        invoke = invoker(cli, chain, tmp_path, alerts_toml(webhook=url))

        listed = invoke("alerts", "list")
        tested = invoke("alerts", "test")
        sent = invoke("alerts", "messages", "--json")

    assert listed.exit_code == 0, listed.output
    assert "no open alerts" in listed.stdout
    assert tested.exit_code == 0, tested.output
    assert "webhook:127.0.0.1: ok" in tested.stdout
    assert received[0]["text"].startswith("*[fluxion-etl] test message*")
    assert json.loads(sent.stdout) == []  # a test is not an alert message
