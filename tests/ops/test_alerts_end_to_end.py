"""Alerts end to end: the embedded scheduler fires the default schedules over a simulated morning,
the runner syncs a simulated chain, and the evaluator runs on its own clock every 5 minutes,
sending through a real SMTP server (aiosmtpd) and a real webhook receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from typing import Any

import httpx
import pytest
from ops_support import (
    TODAY,
    Chain,
    alerts_toml,
    every,
    local,
    simulated_chain,
    smtp_server,
    webhook_receiver,
)
from sqlalchemy import Engine

from fluxion_etl.domain.schedules import FireSource
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.ops.alerts import AlertEvaluator, open_alerts
from fluxion_etl.ops.channels import channels_from_config
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.scheduler.fires import submitting_fire
from fluxion_etl.store import schedules

START = local(TODAY, 10)
STEP = timedelta(minutes=5)


@dataclass
class Morning:
    """The chain, its scheduler and evaluator, and what the two receivers got."""

    chain: Chain
    scheduler: EmbeddedScheduler
    evaluator: AlertEvaluator
    mails: list[Message]
    hooks: list[dict[str, Any]]

    def until(self, end: datetime, *, evaluate_from: datetime) -> None:
        """Every 5 simulated minutes: fire what is due (runs execute at once), then evaluate."""
        start = self.chain.clock.now() + STEP if self.chain.clock.now() > START else START
        for moment in every(start, end, STEP):
            self.chain.clock.set(moment)
            self.scheduler.tick()
            if moment >= evaluate_from:
                self.evaluator.evaluate()

    def subjects(self) -> list[str]:
        return [str(mail["Subject"]) for mail in self.mails]


@pytest.fixture
def morning(engine: Engine) -> Iterator[Morning]:
    with build_morning(engine) as built:
        yield built


@pytest.fixture
def sqlite_morning(sqlite_engine: Engine) -> Iterator[Morning]:
    """The scheduler side is tested on both dialects; this one needs only one."""
    with build_morning(sqlite_engine) as built:
        yield built


@contextmanager
def build_morning(engine: Engine) -> Iterator[Morning]:
    with ExitStack() as stack:
        port, mails = stack.enter_context(smtp_server())
        url, hooks = stack.enter_context(webhook_receiver())
        chain = stack.enter_context(
            simulated_chain(
                engine,
                start=START,
                lines_per_day=200,  # every scheduled window has lines: no provisional stretch
                alerts_toml=alerts_toml(smtp_port=port, webhook=url),
                sales_deadline_seconds=600,  # sales stale 2 x 30 min + 10 min after a success
            )
        )
        http = stack.enter_context(httpx.Client())
        with chain.engine.begin() as conn:
            schedules.seed_schedules(conn, schedules.definitions_from_config(chain.config), START)
        rt = chain.runtime()
        fire = submitting_fire(
            chain.engine,
            config=chain.config,
            settings=chain.settings,
            clock=chain.clock,
            on_created=lambda run_id: execute_run(rt, run_id),
        )
        scheduler = EmbeddedScheduler(chain.engine, chain.clock, fire, source=FireSource.EMBEDDED)
        evaluator = AlertEvaluator(
            chain.engine,
            config=chain.config,
            settings=chain.settings,
            clock=chain.clock,
            channels=channels_from_config(chain.config.alerts, env={}, http=http),
            http=http,
        )
        yield Morning(chain, scheduler, evaluator, mails, hooks)


def test_an_hour_of_failures_sends_one_failure_one_staleness_and_one_recovery_on_both_channels(
    morning: Morning,
) -> None:
    morning.chain.fault(
        "sales@tienda_02:http_500:from=2025-11-17T10:10:00:until=2025-11-17T11:10:00"
    )

    morning.until(local(TODAY, 10, 30), evaluate_from=local(TODAY, 10, 5))
    assert morning.mails == []  # 2 inventory runs and a sales run succeeded: nothing to say
    assert morning.hooks == []

    morning.until(local(TODAY, 12), evaluate_from=START)

    subjects = morning.subjects()
    assert subjects == [
        "[fluxion-etl] ALERT: sales failing at tienda_02",
        "[fluxion-etl] ALERT: sales stale at tienda_02",
        "[fluxion-etl] RECOVERED: tienda_02 (sales failing, sales stale)",
    ]
    assert [hook["text"].splitlines()[0] for hook in morning.hooks] == [
        f"*{subject}*" for subject in subjects
    ]
    failing, stale, recovered = (hook["fluxion"] for hook in morning.hooks)
    assert failing["alerts"][0]["location_id"] == "tienda_02"
    assert "http_status" in failing["alerts"][0]["summary"]
    assert stale["alerts"][0]["kind"] == "stale"
    assert {a["state"] for a in recovered["alerts"]} == {"cleared"}
    assert all(mail["To"] == "ops@example.com" for mail in morning.mails)
    body = morning.mails[0].get_payload()
    assert "Next: read the failed run's log" in str(body)
    with morning.chain.engine.connect() as conn:
        assert open_alerts(conn) == []


def test_a_disabled_schedule_still_raises_staleness(sqlite_morning: Morning) -> None:
    morning = sqlite_morning
    morning.until(local(TODAY, 10, 5), evaluate_from=local(TODAY, 10, 5))
    with morning.chain.engine.begin() as conn:
        schedules.update_schedule(conn, "sales", enabled=False, by="test", now=START)

    morning.until(local(TODAY, 11, 15), evaluate_from=START)
    assert morning.mails == []  # 10:05 + 70 min: not yet stale

    morning.until(local(TODAY, 11, 45), evaluate_from=START)

    assert sorted(morning.subjects()) == [
        f"[fluxion-etl] ALERT: sales stale at {store}"
        for store in ("tienda_01", "tienda_02", "tienda_03")
    ]
    assert len(morning.hooks) == 3
    with morning.chain.engine.connect() as conn:
        fires = schedules.list_fires(conn, schedule_name="sales", limit=10)
    assert {fire.outcome.value for fire in fires if fire.scheduled_for > local(TODAY, 10, 5)} == {
        "skipped_disabled"
    }
