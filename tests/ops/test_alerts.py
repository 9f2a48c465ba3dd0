"""The alert evaluator on each dialect: one alert per condition until it clears, announced once,
recovered once, rate-limited, batched, retried when every channel failed, a daily digest, the
dead-man ping, and one evaluating process among several."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from ops_support import TODAY, local, webhook_receiver
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig, parse_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.schedules import FireSource
from fluxion_etl.domain.states import FireOutcome, ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.errors import AlertDeliveryError, ConfigError
from fluxion_etl.ops.alerts import AlertEvaluator, open_alerts, recent_alerts
from fluxion_etl.ops.channels import Message, channels_from_config
from fluxion_etl.ops.duties import OpsDuties
from fluxion_etl.settings import Settings
from fluxion_etl.store import alerts as alert_store
from fluxion_etl.store import held, ledger, schedules, sync_state
from fluxion_etl.store.db import create_db_engine

NOW = local(TODAY, 10)
STORES = ("tienda_01", "tienda_02", "tienda_03", "tienda_04", "tienda_05", "tienda_06")
CONFIG = "\n".join(
    f"""
[[locations]]
id = "{store}"
name = "STORE {n}"
branch_code = "SUC{n:03d}"
warehouses = [{{ code = "W{n:02d}", role = "sales_floor" }}]
"""
    for n, store in enumerate(STORES, start=1)
)


@dataclass
class Recorder:
    """A channel that keeps what it is given; ``fail`` makes the next sends fail."""

    name: str = "recorder"
    sent: list[Message] = field(default_factory=list)
    fail: int = 0

    def send(self, message: Message) -> None:
        if self.fail:
            self.fail -= 1
            raise AlertDeliveryError(self.name, "connection refused")
        self.sent.append(message)

    @property
    def subjects(self) -> list[str]:
        return [m.subject for m in self.sent]


@dataclass
class Bench:
    engine: Engine
    clock: ManualClock
    config: ChainConfig
    channel: Recorder
    evaluator: AlertEvaluator

    def evaluate(self, *, minutes: float = 0) -> None:
        self.clock.advance(minutes=minutes)
        self.evaluator.evaluate()

    def fail(self, location_id: str, job: str = "sales") -> None:
        with self.engine.begin() as conn:
            sync_state.record_failure(
                conn,
                job=job,
                location_id=location_id,
                now=self.clock.now(),
                category="http_status",
                message="KLK ventas: http_status: HTTP 500",
                threshold=3,
                reset_after=timedelta(minutes=5),
            )

    def succeed(self, location_id: str, job: str = "sales") -> None:
        with self.engine.begin() as conn:
            sync_state.record_success(
                conn, job=job, location_id=location_id, run_id=1, now=self.clock.now()
            )


def make_bench(engine: Engine, **alerts: object) -> Bench:
    config = parse_config(tomllib.loads(CONFIG), "<alert tests>")
    config = replace(config, alerts=config.alerts.model_copy(update=alerts))
    clock, channel = ManualClock(NOW), Recorder()
    evaluator = AlertEvaluator(
        engine,
        config=config,
        settings=Settings(),
        clock=clock,
        channels=[channel],
        http=httpx.Client(),
    )
    bench = Bench(engine, clock, config, channel, evaluator)
    for store in STORES:  # every store synced just now: nothing is stale
        bench.succeed(store, "sales")
        bench.succeed(store, "inventory")
    return bench


@pytest.fixture
def bench(engine: Engine) -> Bench:
    return make_bench(engine)


@pytest.fixture
def sqlite_bench(sqlite_engine: Engine) -> Bench:
    """For rules above the store, whose statements the tests on both dialects run."""
    return make_bench(sqlite_engine)


def test_a_condition_seen_again_and_again_is_one_alert_and_one_message(bench: Bench) -> None:
    bench.evaluate()
    assert bench.channel.sent == []

    bench.fail("tienda_02")
    for _ in range(3):
        bench.evaluate(minutes=1)
    bench.fail("tienda_02")  # a second failed run: the same condition
    bench.evaluate(minutes=1)

    assert bench.channel.subjects == ["[fluxion-etl] ALERT: sales failing at tienda_02"]
    with bench.engine.connect() as conn:
        [alert] = open_alerts(conn)
    assert alert.detail is not None
    assert alert.detail["consecutive_failures"] == 2
    assert alert.notified_at == NOW + timedelta(minutes=1)


def test_a_recovery_is_announced_once_and_a_new_occurrence_is_a_new_alert(bench: Bench) -> None:
    bench.fail("tienda_02")
    bench.evaluate()
    bench.succeed("tienda_02")
    bench.evaluate(minutes=30)
    bench.evaluate(minutes=1)
    bench.fail("tienda_02")
    bench.evaluate(minutes=1)

    assert bench.channel.subjects == [
        "[fluxion-etl] ALERT: sales failing at tienda_02",
        "[fluxion-etl] RECOVERED: tienda_02 (sales failing)",
        "[fluxion-etl] ALERT: sales failing at tienda_02",
    ]
    with bench.engine.connect() as conn:
        history = recent_alerts(conn, since=NOW)
    assert [(a.is_open, a.recovery_notified_at is not None) for a in history] == [
        (True, False),
        (False, True),
    ]


def test_the_rate_limit_holds_messages_back_until_the_hour_has_room(
    sqlite_engine: Engine,
) -> None:
    bench = make_bench(sqlite_engine, rate_limit_per_hour=2)
    for store in STORES[:4]:
        bench.fail(store)
    bench.evaluate()
    assert len(bench.channel.sent) == 2

    bench.evaluate(minutes=30)
    assert len(bench.channel.sent) == 2  # still two within the hour

    bench.evaluate(minutes=31)
    assert sorted(bench.channel.subjects) == [
        f"[fluxion-etl] ALERT: sales failing at {store}" for store in STORES[:4]
    ]


def test_an_alert_that_clears_before_it_was_announced_gets_no_recovery_notice(
    sqlite_engine: Engine,
) -> None:
    bench = make_bench(sqlite_engine, rate_limit_per_hour=1)
    bench.fail("tienda_01")
    bench.fail("tienda_02")
    bench.evaluate()
    bench.succeed("tienda_01")
    bench.succeed("tienda_02")
    bench.evaluate(minutes=61)

    # tienda_01's alert went out, so its recovery does; tienda_02's never did, nor its recovery
    assert bench.channel.subjects == [
        "[fluxion-etl] ALERT: sales failing at tienda_01",
        "[fluxion-etl] RECOVERED: tienda_01 (sales failing)",
    ]


def test_more_than_a_burst_at_once_goes_out_as_one_summary(sqlite_bench: Bench) -> None:
    bench = sqlite_bench
    for store in STORES:
        bench.fail(store)
    bench.evaluate()

    assert bench.channel.subjects == ["[fluxion-etl] 6 new alert(s), 0 recovered"]
    assert len(bench.channel.sent[0].alerts) == 6
    with bench.engine.connect() as conn:
        assert all(a.notified_at is not None for a in open_alerts(conn))


def test_when_every_channel_fails_the_message_is_tried_again(sqlite_bench: Bench) -> None:
    bench = sqlite_bench
    bench.channel.fail = 1
    bench.fail("tienda_03")
    bench.evaluate()
    assert bench.channel.sent == []

    bench.evaluate(minutes=1)

    assert bench.channel.subjects == ["[fluxion-etl] ALERT: sales failing at tienda_03"]
    with bench.engine.connect() as conn:
        tried = alert_store.list_messages(conn)
    assert [(m.delivered, m.deliveries) for m in tried] == [
        (True, {"recorder": "ok"}),
        (False, {"recorder": "connection refused"}),
    ]


def test_the_daily_digest_goes_out_once_a_day_after_seven(sqlite_engine: Engine) -> None:
    bench = make_bench(sqlite_engine, daily_digest=True)
    bench.clock.set(local(TODAY, 6, 59))
    bench.fail("tienda_01")
    bench.evaluate()
    assert [m.kind for m in bench.channel.sent] == ["alert"]

    bench.evaluate(minutes=2)
    bench.evaluate(minutes=60)
    bench.clock.set(local(TODAY + timedelta(days=1), 7, 30))
    bench.evaluate()

    digests = [m for m in bench.channel.sent if m.kind == "digest"]
    assert [m.sent_at for m in digests] == [
        local(TODAY, 7, 1),
        local(TODAY + timedelta(days=1), 7, 30),
    ]
    assert "Open alerts: 1" in digests[0].text
    assert "sales failing at tienda_01" in digests[0].text


def test_conditions_of_every_kind_open_and_clear(bench: Bench) -> None:
    now = bench.clock.now()
    with bench.engine.begin() as conn:
        held.record_held_deletion(
            conn,
            run_id=1,
            location_id="tienda_04",
            job="reconcile",
            subject="sales 2025-11-16",
            would_delete=40,
            total=100,
            now=now,
        )
        abandoned = ledger.create_run(
            conn, RunRequest(job=Job.INVENTORY, trigger=Trigger.CLI), now=now
        ).run_id
        ledger.claim_run(conn, abandoned, owner="x", now=now, deadline_at=now)
        ledger.finish_run(conn, abandoned, RunStatus.ABANDONED, now=now, error_message="died")
        schedules.seed_schedules(conn, schedules.definitions_from_config(bench.config), now=now)
        schedules.record_fire(
            conn,
            schedule_name="sales",
            scheduled_for=now - timedelta(hours=2),
            outcome=FireOutcome.MISSED,
            run_id=None,
            source=FireSource.EMBEDDED,
            now=now,
        )
    bench.evaluate()

    with bench.engine.connect() as conn:
        kinds = {(a.kind, a.job, a.location_id or a.subject) for a in open_alerts(conn)}
    assert kinds == {
        ("mass_deletion_held", "reconcile", "tienda_04"),
        ("abandoned_run", "inventory", None),
        ("missed_fire", "sales", "sales"),
    }
    with bench.engine.begin() as conn:
        held.resolve_held_deletions(
            conn, location_id="tienda_04", subject="sales 2025-11-16", now=now
        )
    bench.clock.advance(minutes=61)  # an hour later the events are over
    for store in STORES:
        bench.succeed(store)
        bench.succeed(store, "inventory")
    bench.evaluate()

    with bench.engine.connect() as conn:
        assert open_alerts(conn) == []
    assert sorted(m.subject for m in bench.channel.sent if m.kind == "recovery") == [
        "[fluxion-etl] RECOVERED: the service (inventory run abandoned, sales missed fire (sales))",
        "[fluxion-etl] RECOVERED: tienda_04 (reconcile mass deletion held)",
    ]


def test_a_location_that_failed_on_an_internal_error_is_failing_but_one_left_unstarted_is_not(
    bench: Bench,
) -> None:
    now = bench.clock.now()
    with bench.engine.begin() as conn:
        run_id = ledger.create_run(
            conn, RunRequest(job=Job.SALES, trigger=Trigger.SCHEDULE), now=now
        ).run_id
        ledger.claim_run(conn, run_id, owner="x", now=now, deadline_at=now)
        ledger.create_items(conn, run_id, ["tienda_01", "tienda_02"])
        ledger.finish_item(
            conn,
            run_id,
            "tienda_01",
            ItemStatus.FAILED,
            now=now,
            error_phase="load",
            error_message="internal error: KeyError: 'x'",
        )
        ledger.finish_item(
            conn,
            run_id,
            "tienda_02",
            ItemStatus.FAILED,
            now=now,
            error_message="service shutting down before this location started",
        )
        ledger.finish_run(conn, run_id, RunStatus.FAILED, now=now)
    bench.evaluate()

    assert bench.channel.subjects == ["[fluxion-etl] ALERT: sales failing at tienda_01"]
    assert "internal error: KeyError" in bench.channel.sent[0].text


def test_one_evaluating_process_of_several(bench: Bench) -> None:
    other = AlertEvaluator(
        bench.engine,
        config=bench.config,
        settings=Settings(),
        clock=bench.clock,
        channels=[bench.channel],
        http=httpx.Client(),
    )
    ttl = timedelta(minutes=3)
    bench.fail("tienda_01")

    assert bench.evaluator.evaluate_if_leader("a", ttl) is not None
    assert other.evaluate_if_leader("b", ttl) is None
    bench.clock.advance(minutes=1)
    assert bench.evaluator.evaluate_if_leader("a", ttl) is not None  # renewed
    bench.clock.advance(minutes=3, seconds=1)  # "a" stopped renewing
    assert other.evaluate_if_leader("b", ttl) is not None
    assert bench.evaluator.evaluate_if_leader("a", ttl) is None
    assert len(bench.channel.sent) == 1


def test_a_healthy_evaluation_pings_the_dead_man_and_a_dead_database_does_not(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine
    with webhook_receiver() as (url, received):
        toml = CONFIG + f'\n[alerts]\ndeadman_url = "{url.rsplit("/hooks", 1)[0]}/ping/abc"\n'
        config = parse_config(tomllib.loads(toml), "<deadman>")
        make_bench(engine)  # every store fresh
        clock = ManualClock(NOW)
        duties = OpsDuties(
            engine,
            config=config,
            settings=Settings(auto_recover=False),
            clock=clock,
            launch=lambda run_id: None,
            owner="me",
        )
        duties.tick()
        clock.advance(seconds=30)
        duties.tick()  # not due yet (every 60 s)
        clock.advance(seconds=31)
        duties.tick()
        broken = create_db_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
        dead = OpsDuties(
            broken,
            config=config,
            settings=Settings(),
            clock=clock,
            launch=lambda run_id: None,
            owner="me",
        )
        dead.tick()
        duties.close()
        dead.close()

    assert received == [{"ping": "/ping/abc"}, {"ping": "/ping/abc"}]


def test_channels_are_checked_when_the_service_starts() -> None:
    base = parse_config(tomllib.loads(CONFIG), "<channels>").alerts
    smtp = {"kind": "smtp", "host": "mail", "sender": "a@b", "recipients": ["c@d"]}

    with pytest.raises(ConfigError, match="FLUXION_SMTP_PASSWORD"):
        channels_from_config(
            base.model_validate({"channels": [{**smtp, "password_env": "FLUXION_SMTP_PASSWORD"}]}),
            env={},
            http=httpx.Client(),
        )
    with pytest.raises(ConfigError, match="recipients"):
        channels_from_config(
            base.model_validate({"channels": [{**smtp, "recipients": []}]}),
            env={},
            http=httpx.Client(),
        )
    with pytest.raises(ConfigError, match="url"):
        channels_from_config(
            base.model_validate({"channels": [{"kind": "webhook"}]}), env={}, http=httpx.Client()
        )
    [channel] = channels_from_config(
        base.model_validate({"channels": [{**smtp, "password_env": "PW", "starttls": True}]}),
        env={"PW": "secret"},
        http=httpx.Client(),
    )
    assert channel.name == "smtp:mail:587"
