"""No secret or token reaches the logs, an answer, the metrics, an alert or the database.

The service runs in this process with known secrets: an admin token, a PostgreSQL URL with the
password of its login role, ``FLUXION_SESSION_SECRET``, ``FLUXION_METRICS_TOKEN``, an SMTP
password named by ``password_env``, and webhook and dead-man URLs whose paths are their secrets.
It then does what produces text: runs that load, runs that fail (a KLK fault, then KLK down),
alerts sent by mail and webhook (the webhook first refusing with a page that echoes its path),
logins right and wrong, requests with wrong tokens, every read route, the control centre's pages,
and the database going away (its role may not log in) and coming back. Then everything it
produced is searched for each secret: the console log lines, every answer (headers included),
``/metrics``, every message the SMTP server and the webhook received, and every value of every
row of every table. The token's SHA-256 may be stored; the token itself never.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from engine_support import LOCATIONS, NOW, build_world
from reliability_support import (
    Mailbox,
    PgDatabase,
    Receiver,
    http_receiver,
    pausable_proxy,
    pg_database_with_password,
    smtp_server_with_login,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.config import parse_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.logs import configure_logging
from fluxion_etl.service import Service
from fluxion_etl.settings import Settings
from fluxion_etl.sim.faults import FaultPlan, parse_faults
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.topology import chain_config_toml
from fluxion_etl.store import schema, tokens
from fluxion_etl.store.db import create_db_engine, upgrade

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SMTP_PASSWORD_ENV = "FLUXION_TEST_SMTP_PASSWORD"
FINISHED = ("succeeded", "partial", "failed", "timed_out", "abandoned", "cancelled")


@dataclass(frozen=True)
class Secrets:
    database: PgDatabase
    admin_token: str = ""
    session_secret: str = field(default_factory=lambda: f"session-{uuid.uuid4().hex}")
    metrics_token: str = field(default_factory=lambda: f"metrics-{uuid.uuid4().hex}")
    smtp_password: str = field(default_factory=lambda: f"smtp-{uuid.uuid4().hex}")
    webhook_key: str = field(default_factory=lambda: f"hook{uuid.uuid4().hex}")
    deadman_key: str = field(default_factory=lambda: f"ping{uuid.uuid4().hex}")

    def named(self) -> dict[str, str]:
        return {
            "database password": self.database.password,
            "admin token": self.admin_token,
            "session secret": self.session_secret,
            "metrics token": self.metrics_token,
            "SMTP password": self.smtp_password,
            "webhook URL's key": self.webhook_key,
            "dead-man URL's key": self.deadman_key,
        }


@dataclass
class Produced:
    """Everything the service said, wherever it said it."""

    answers: list[str] = field(default_factory=list)

    def record(self, answer: Any) -> Any:
        headers = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
        self.answers.append(
            f"{answer.request.method} {answer.request.url}\n{headers}\n{answer.text}"
        )
        return answer


def alerts_toml(mail: Mailbox, hook: Receiver, secrets: Secrets) -> str:
    return f"""
[alerts]
rate_limit_per_hour = 100
deadman_url = "{hook.url}/ping/{secrets.deadman_key}"

[[alerts.channels]]
kind = "smtp"
host = "127.0.0.1"
port = {mail.port}
sender = "fluxion@example.com"
recipients = ["ops@example.com"]
username = "fluxion"
password_env = "{SMTP_PASSWORD_ENV}"

[[alerts.channels]]
kind = "webhook"
url = "{hook.url}/services/T000/B000/{secrets.webhook_key}"
"""


@pytest.fixture
def database() -> Iterator[PgDatabase]:
    with pg_database_with_password() as db:
        yield db


def wait_finished(client: TestClient, produced: Produced, auth: dict[str, str], run_id: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = produced.record(client.get(f"/api/etl/runs/{run_id}", headers=auth)).json()
        if status["status"] in FINISHED:
            return str(status["status"])
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


class HeldClock(ManualClock):
    """A ManualClock that only the test moves. The service's own threads sleep in its time (the
    embedded scheduler between ticks): a ManualClock's ``sleep`` would advance the time for
    everyone, so the scheduler would race through the schedules' fire times on its own, one run
    after another, and never let the test's runs have the locations. Here a sleep waits a little
    real time instead, so the loops poll and the time stands still until the test advances it."""

    def sleep(self, seconds: float) -> None:
        time.sleep(min(max(0.0, seconds), 0.05))


def wait_scheduler_settled(client: TestClient, produced: Produced, auth: dict[str, str]) -> None:
    """The embedded scheduler's next tick (within a poll) fires what is due: on a fresh database
    the inventory run of the start's hour, after each 30-minute jump the inventory and the sales
    schedule, one after the other; the test's own runs would meet their leases. Wait until every
    run has finished and no new one has appeared for longer than a tick (a fast-failing inventory
    run can finish before the same tick fires the sales schedule). Other runs are not waited for:
    one that crashed while the database was away stays ``running`` until its lease expires."""
    deadline, quiet_for = time.monotonic() + 60, 1.5
    seen: set[int] = set()
    settled_since = time.monotonic()
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = produced.record(client.get("/api/etl/runs?limit=50", headers=auth)).json()
        runs = [run for run in answer["runs"] if run["trigger"] == "schedule"]
        ids = {run["id"] for run in runs}
        if ids != seen or not all(run["status"] in FINISHED for run in runs):
            seen, settled_since = ids, time.monotonic()
        elif time.monotonic() - settled_since > quiet_for:
            return
        time.sleep(0.05)
    unsettled = [(run["id"], run["status"]) for run in runs if run["status"] not in FINISHED]
    raise AssertionError(f"the scheduler's runs did not settle: {unsettled} of {sorted(seen)}")


def sync_both(client: TestClient, produced: Produced, auth: dict[str, str]) -> list[str]:
    """An inventory and a sales run of every location, waited for; their statuses."""
    statuses = []
    for path in ("/api/etl/sync", "/api/etl/sync/ventas"):
        answer = produced.record(client.post(path, json={"ubicacion_id": None}, headers=auth))
        assert answer.status_code == 202, answer.text
        statuses.append(wait_finished(client, produced, auth, answer.json()["run_id"]))
    return statuses


def read_everything(client: TestClient, produced: Produced, auth: dict[str, str]) -> None:
    """Every read route of the API, and the control centre's pages as a logged-in user."""
    runs = produced.record(client.get("/api/etl/runs?limit=200", headers=auth)).json()["runs"]
    for run in runs:
        produced.record(client.get(f"/api/etl/runs/{run['id']}", headers=auth))
        produced.record(client.get(f"/api/etl/runs/{run['id']}/logs?limit=1000", headers=auth))
        produced.record(client.get(f"/runs/{run['id']}"))
    for path in ("/api/etl/locations", "/api/etl/freshness", "/api/etl/gaps", "/metrics"):
        produced.record(client.get(path, headers=auth))
    for path in ("/", "/runs", "/schedules", "/gaps", "/locations", "/healthz", "/readyz"):
        produced.record(client.get(path))


def log_in(client: TestClient, produced: Produced, token: str) -> int:
    page = produced.record(client.get("/login")).text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/login", data={"token": token, "csrf": csrf, "next": "/"}, follow_redirects=False
    )
    return int(produced.record(answer).status_code)


def refuse_the_role(database: PgDatabase, *, login: bool) -> None:
    """The database refuses the service's role (and drops its sessions), or takes it back."""
    admin = create_engine(database.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER ROLE "{database.role}" {"LOGIN" if login else "NOLOGIN"}'))
        if not login:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": database.role},
            )
    admin.dispose()


def every_stored_value(database: PgDatabase) -> list[tuple[str, str, str]]:
    """(table, column, value as text) of every row of every table, read as the superuser."""
    admin = create_engine(database.admin_url)
    found: list[tuple[str, str, str]] = []
    with admin.connect() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    if isinstance(value, bytes):
                        shown = value.decode("utf-8", "replace")
                    elif isinstance(value, dict | list):
                        shown = json.dumps(value, default=str)
                    else:
                        shown = str(value)
                    found.append((table.name, column, shown))
    admin.dispose()
    return found


@pytest.mark.postgres
@pytest.mark.slow
def test_no_secret_reaches_logs_answers_metrics_alerts_or_the_database(
    database: PgDatabase, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    engine = create_db_engine(database.url())
    upgrade(engine)
    with engine.begin() as conn:
        admin_token = tokens.create_token(
            conn, name="ops-admin", scope=tokens.Scope.ADMIN, now=NOW
        ).secret
    engine.dispose()
    secrets = Secrets(database, admin_token=admin_token)
    monkeypatch.setenv(SMTP_PASSWORD_ENV, secrets.smtp_password)
    configure_logging("console")  # the renderer that printed tracebacks' local variables
    produced = Produced()
    clock = HeldClock(NOW)
    world = build_world(clock)
    plan = FaultPlan(seed=world.seed)
    plan.replace(parse_faults("sales@tienda_02:error_body;catalogue@tienda_03:truncated_json"))
    with (
        smtp_server_with_login() as mail,
        http_receiver(failures=1) as hook,
        running_simulator(world, plan) as klk_url,
        pausable_proxy(*_host_port(klk_url)) as klk,
    ):
        toml = chain_config_toml(tuple(world.location(i) for i in LOCATIONS))
        config = parse_config(tomllib.loads(toml + alerts_toml(mail, hook, secrets)), "chain.toml")
        settings = Settings(
            database_url=database.url(),
            klk_base_url=f"http://127.0.0.1:{klk.port}",
            session_secret=secrets.session_secret,  # type: ignore[arg-type]
            metrics_token=secrets.metrics_token,  # type: ignore[arg-type]
            klk_retry_attempts=2,
            klk_retry_initial_wait=0.01,
            klk_retry_max_wait=0.02,
            circuit_failure_threshold=2,
            heartbeat_seconds=0.5,
        )
        service = Service.open(settings, config, clock)
        service.start()
        try:
            _exercise(service, produced, secrets, database, klk, clock)
        finally:
            service.stop(grace=10)
        delivered = [message.as_string() for message in mail.messages]
        hooks = [f"{method} {path} {body.decode()}" for method, path, body in hook.requests]
    printed = capfd.readouterr()
    stored = every_stored_value(database)

    assert set(mail.logins) == {("fluxion", secrets.smtp_password)}, "the channel did log in"
    assert any(secrets.webhook_key in entry for entry in hooks), "the webhook was called"
    assert len(delivered) >= 1
    assert any(column == "token_hash" for _, column, _ in stored)
    scheduled = [v for table, column, v in stored if (table, column) == ("fires", "scheduled_for")]
    # time moved only with the test: 19:00 Caracas, three 30-minute jumps, then 2 + 2 + 2 minutes
    # (inventory on the hour and half hour, sales five minutes past), each fire once
    expected = [f"2025-11-{t}:00+00:00" for t in ("17 23:00", "17 23:30", "18 00:00", "18 00:30")]
    expected += [f"2025-11-{t}:00+00:00" for t in ("17 23:05", "17 23:35", "18 00:05", "18 00:35")]
    assert sorted(scheduled) == sorted(expected)
    token_hash = hashlib.sha256(secrets.admin_token.encode()).hexdigest()
    assert ("api_tokens", "token_hash", token_hash) in stored, "the token is stored as its hash"
    places = {
        "stdout": [printed.out],
        "stderr (logs)": [printed.err],
        "answers": produced.answers,
        "mails sent": delivered,
        "webhook bodies": [body.decode() for _, _, body in hook.requests],
        "database": [f"{table}.{column} = {value}" for table, column, value in stored],
    }
    assert printed.err.count("\n") > 20, "the service logged what it did"
    leaks = [
        f"{secret} in {place}: ...{text[max(0, text.find(value) - 120) : text.find(value) + 40]}"
        for secret, value in secrets.named().items()
        for place, texts in places.items()
        for text in texts
        if value in text
    ]
    assert leaks == []


def _exercise(
    service: Service,
    produced: Produced,
    secrets: Secrets,
    database: PgDatabase,
    klk: Any,
    clock: ManualClock,
) -> None:
    client = TestClient(service.app())
    admin = {"Authorization": f"Bearer {secrets.admin_token}"}

    # runs that load, and runs that fail on a KLK fault (raw payloads kept)
    wait_scheduler_settled(client, produced, admin)
    assert sync_both(client, produced, admin) == ["partial", "partial"]
    # KLK down: every location fails, then circuits open
    klk.pause()
    for _ in range(3):
        clock.advance(minutes=30)  # the inventory schedule fires: its run holds the locations
        wait_scheduler_settled(client, produced, admin)
        assert sync_both(client, produced, admin) == ["failed", "failed"]
    klk.resume()

    # alerts: mail (with a login) and a webhook that first answers with an echo of its path
    for _ in range(2):
        clock.advance(minutes=2)
        service.maintain_once()

    # wrong tokens, right and wrong logins, scrape token
    for wrong in ("flx_not-a-token", secrets.admin_token + "x", secrets.admin_token[:-1]):
        produced.record(client.get("/api/etl/runs", headers={"Authorization": f"Bearer {wrong}"}))
    produced.record(
        client.get("/metrics", headers={"Authorization": f"Bearer {secrets.metrics_token}"})
    )
    produced.record(
        client.get("/metrics", headers={"Authorization": f"Bearer {secrets.metrics_token}x"})
    )
    produced.record(
        client.get("/api/etl/runs", headers={"Authorization": f"Basic {secrets.admin_token}"})
    )
    assert log_in(client, produced, secrets.admin_token[:-2] + "zz") == 401
    assert log_in(client, produced, secrets.admin_token) == 303
    read_everything(client, produced, admin)
    produced.record(client.post("/api/etl/gaps/recover", json={}, headers=admin))

    # the database goes away: answers, maintenance and readiness say so; then it comes back
    refuse_the_role(database, login=False)
    try:
        for method, path in (
            ("GET", "/api/etl/runs"),
            ("POST", "/api/etl/sync"),
            ("GET", "/readyz"),
            ("GET", "/"),
        ):
            answer = produced.record(
                client.request(method, path, headers=admin, json={"ubicacion_id": None})
            )
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
        try:
            service.maintain_once()
        except SQLAlchemyError as exc:  # the maintenance loop logs it the way it logs any failure
            structlog.get_logger("fluxion.service").warning(
                "maintenance skipped", error=str(exc).splitlines()[0][:200]
            )
            structlog.get_logger("fluxion.test").error("as a traceback", exc_info=exc)
    finally:
        refuse_the_role(database, login=True)
    assert produced.record(client.get("/readyz")).status_code == 200
    clock.advance(minutes=2)  # the sales schedule's 00:35 fire is due
    wait_scheduler_settled(client, produced, admin)
    service.maintain_once()
    read_everything(client, produced, admin)
    produced.record(client.post("/logout", data={}))


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def test_a_logged_traceback_shows_no_local_variables(capfd: pytest.CaptureFixture[str]) -> None:
    """A traceback in the log names the frames, never their variables (a token, a settings
    object with the database URL): on the console as in JSON."""
    secret = f"flx_{uuid.uuid4().hex}"

    def authenticate(token: str) -> None:
        raise RuntimeError("token refused")

    for fmt in ("console", "json"):
        configure_logging(fmt)
        try:
            authenticate(secret)
        except RuntimeError:
            structlog.get_logger("fluxion.test").exception("unexpected error")

    printed = capfd.readouterr().err
    assert printed.count("RuntimeError: token refused") == 2
    assert "in authenticate" in printed, "the frames are named"
    assert secret not in printed


def test_settings_never_show_the_database_password() -> None:
    password = f"pw-{uuid.uuid4().hex}"
    settings = Settings(database_url=f"postgresql+psycopg://fluxion:{password}@db:5432/fluxion")

    assert password not in repr(settings)
    assert password not in str(settings)
    assert settings.database_url.endswith("@db:5432/fluxion")  # still there for the engine
