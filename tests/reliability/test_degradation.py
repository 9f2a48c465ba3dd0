"""Graceful degradation: KLK down for hours, a slow database, the database gone and back.

- KLK down for six simulated hours under the default schedules: per location and job the circuit
  opens after ``circuit_failure_threshold`` failed runs, later runs skip it without a request,
  one half-open probe per reset period; requests counted at the transport. The alert evaluator,
  run every five minutes throughout, opens one alert per condition, never one per run.
- A slow database (a row lock held by another session, statements bounded by the session's lock
  timeout): the blocked location waits, then fails with category ``database``, nothing of it
  stored; a second run meanwhile skips it as busy and ends at once; the blocked run ends too.
- The database unreachable behind a paused TCP proxy while the API serves: ``/healthz`` 200,
  ``/readyz`` and the work routes 503 with a clear body, at once; resumed, the same app answers
  200/202 again without a restart.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import NOW as API_NOW
from api_support import FakeLauncher, make_tokens
from engine_support import (
    LOCATIONS,
    STORES,
    TODAY,
    Chain,
    build_world,
    chain_config,
    coverage_of,
    fast_settings,
    local,
    sales_stamps,
    watermark_of,
)
from reliability_support import pausable_proxy
from sqlalchemy import Engine, event, select, text

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.schedules import FireSource
from fluxion_etl.domain.states import ErrorCategory, ItemStatus, Job, RunStatus
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.ops.alerts import AlertEvaluator
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.scheduler.fires import submitting_fire
from fluxion_etl.settings import Settings
from fluxion_etl.store import alerts as alert_store
from fluxion_etl.store import ledger, schedules
from fluxion_etl.store.db import create_db_engine, upgrade
from fluxion_etl.store.schema import leases, run_items

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

with_postgres_only = pytest.mark.parametrize("engine", ["postgresql"], indirect=True)

# --- KLK down for hours --------------------------------------------------------------------------

FAULTY = "tienda_02"


class DownKlk(httpx.BaseTransport):
    """KLK refusing every connection (a port nobody listens on), counting the attempts per
    (call, warehouse) from the request body."""

    def __init__(self) -> None:
        self.attempts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read() or b"{}")
        warehouse = body.get("almacen") or body.get("Codigoalmacen") or "?"
        call = "sales" if request.url.path == "/ventas" else "catalogue"
        with self._lock:
            self.attempts[(call, warehouse)] += 1
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_hours_of_klk_down_open_one_circuit_per_location_and_one_alert_per_condition(
    sqlite_engine: Engine,
) -> None:
    start, hours, reset = local(TODAY, 9, 55), 6, timedelta(hours=2)
    clock = ManualClock(start)
    world = build_world(clock)
    config = chain_config(world)
    settings = fast_settings(
        str(sqlite_engine.url),
        "http://klk.invalid:7002",
        circuit_failure_threshold=3,
        circuit_reset_seconds=reset.total_seconds(),
        klk_retry_attempts=3,
    )
    klk = DownKlk()
    rt = Runtime(
        settings=settings,
        config=config,
        engine=sqlite_engine,
        klk=KlkClient.from_settings(settings, transport=klk),
        clock=clock,
    )
    with sqlite_engine.begin() as conn:
        schedules.seed_schedules(conn, schedules.definitions_from_config(config), start)
    fire = submitting_fire(
        sqlite_engine,
        config=config,
        settings=settings,
        clock=clock,
        on_created=lambda run_id: execute_run(rt, run_id),
    )
    scheduler = EmbeddedScheduler(sqlite_engine, clock, fire, source=FireSource.EMBEDDED)
    with httpx.Client() as http:
        evaluator = AlertEvaluator(
            sqlite_engine, config=config, settings=settings, clock=clock, channels=[], http=http
        )
        evaluations = 0
        while clock.now() < start + timedelta(hours=hours):
            clock.advance(minutes=5)
            scheduler.tick()
            evaluator.evaluate()
            evaluations += 1
    rt.klk.close()

    with sqlite_engine.connect() as conn:
        runs = [r for r in ledger.list_runs(conn, limit=500) if r.job in (Job.INVENTORY, Job.SALES)]
        items = conn.execute(select(run_items.c.location_id, run_items.c.status)).all()
        raised = alert_store.list_alerts(conn, limit=1000)
        messages = alert_store.list_messages(conn, limit=1000)

    # 12 inventory and 12 sales runs, each run's locations contacting KLK only when allowed
    per_job = Counter(run.job for run in runs)
    assert per_job == {Job.INVENTORY: 2 * hours, Job.SALES: 2 * hours}
    assert all(run.status is RunStatus.FAILED for run in runs), "never '0 rows, success'"
    # each job's runs at 10:00, 10:30 and 11:00 (sales five minutes later) fail, which opens the
    # circuit until 13:00; the probes at 13:00 and 15:00 fail again; the other 7 runs skip it
    contacted = 5
    attempts = settings.klk_retry_attempts
    for location in LOCATIONS:
        floor = config.location(location).warehouses[0].code
        assert klk.attempts[("catalogue", floor)] == contacted * attempts, location
        if location in STORES:
            assert klk.attempts[("sales", floor)] == contacted * attempts, location
    skipped = Counter(loc for loc, status in items if status == ItemStatus.SKIPPED_OPEN_CIRCUIT)
    assert skipped[FAULTY] == 2 * (2 * hours - contacted), "the other runs skipped it"
    assert sum(klk.attempts.values()) < len(runs) * len(LOCATIONS) * attempts / 2

    # one alert per condition, opened once and still open: never one per run
    assert evaluations == hours * 12
    keys = Counter((a.kind, a.job, a.location_id, a.subject) for a in raised)
    assert max(keys.values()) == 1, keys
    assert all(alert.is_open for alert in raised)
    failing = {(a.job, a.location_id) for a in raised if a.kind == "location_failing"}
    assert failing == {("inventory", loc) for loc in LOCATIONS} | {("sales", s) for s in STORES}
    assert len(messages) <= len(raised), "each alert announced at most once"


# --- a slow database -----------------------------------------------------------------------------


def short_timeouts(engine: Engine, lock_ms: int) -> None:
    """Sessions of ``engine`` wait at most ``lock_ms`` for a lock (the product's own bound is a
    minute; a test cannot wait that long). Takes effect for connections made from now on."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {lock_ms}")
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def lock_waiters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
        )


@with_postgres_only
def test_a_slow_database_makes_a_location_wait_then_fail_cleanly_without_pile_up(
    chain: Chain,
) -> None:
    first = chain.run(Job.SALES)
    before = (
        sales_stamps(chain.engine, FAULTY),
        coverage_of(chain.engine, FAULTY),
        watermark_of(chain.engine, FAULTY),
    )
    chain.clock.advance(minutes=30)
    short_timeouts(chain.engine, lock_ms=2500)
    blocker = chain.engine.connect()
    blocker.execute(
        text("SELECT * FROM sync_state WHERE job = 'sales' AND location_id = :loc FOR UPDATE"),
        {"loc": FAULTY},
    )
    outcome: dict[str, Any] = {}
    blocked = threading.Thread(target=lambda: outcome.update(run=chain.run(Job.SALES)))
    try:
        blocked.start()
        deadline = time.monotonic() + 20
        while lock_waiters(chain.engine) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock_waiters(chain.engine) == 1, "the location's load waits on the lock"
        began = time.monotonic()
        meanwhile = chain.run(Job.SALES)
        meanwhile_seconds = time.monotonic() - began
        blocked.join(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    assert not blocked.is_alive(), "the blocked run ended"
    second = outcome["run"]

    assert first.status is RunStatus.SUCCEEDED
    # the run that met the busy location did not wait for it
    assert meanwhile.items[FAULTY].status is ItemStatus.SKIPPED_BUSY
    assert meanwhile_seconds < 2.5
    # the blocked location failed cleanly, the others loaded; the run ended
    assert second.status is RunStatus.PARTIAL
    failed = second.items[FAULTY]
    assert (failed.status, failed.error_category) == (ItemStatus.FAILED, ErrorCategory.DATABASE)
    assert "lock" in (failed.error_message or "")
    assert all(second.items[s].status is ItemStatus.SUCCEEDED for s in STORES if s != FAULTY)
    assert (
        sales_stamps(chain.engine, FAULTY),
        coverage_of(chain.engine, FAULTY),
        watermark_of(chain.engine, FAULTY),
    ) == before, "nothing of the blocked load was stored"
    with chain.engine.connect() as conn:
        assert conn.execute(select(leases)).all() == [], "every lease was released"
        unfinished = ledger.list_runs(conn, status=RunStatus.RUNNING.value, limit=10)
    assert unfinished == []
    # and once the database is quick again, the next run loads it
    chain.clock.advance(minutes=30)
    assert chain.run(Job.SALES).items[FAULTY].status is ItemStatus.SUCCEEDED


# --- the database gone and back ------------------------------------------------------------------


@pytest.fixture
def proxied_database(pg_url: str) -> Iterator[tuple[Any, str]]:
    """A fresh migrated PostgreSQL database, and its URL through a pausable proxy."""
    direct = create_db_engine(pg_url)
    upgrade(direct)
    direct.dispose()
    with pausable_proxy() as proxy:
        yield proxy, pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def test_while_the_database_is_down_health_answers_work_routes_503_and_it_recovers(
    proxied_database: tuple[Any, str], tmp_path: Path
) -> None:
    proxy, url = proxied_database
    engine = create_db_engine(url)
    clock = ManualClock(API_NOW)
    services = ServiceContext(
        settings=Settings(database_url=url),
        config=load_config(None),
        engine=engine,
        launcher=FakeLauncher(),
        clock=clock,
    )
    secrets = make_tokens(engine, API_NOW)
    trigger = {"Authorization": f"Bearer {secrets['trigger']}"}
    client = _client(services)
    try:
        assert client.get("/readyz").status_code == 200
        assert (
            client.post("/api/etl/sync", json={"ubicacion_id": None}, headers=trigger).status_code
            == 202
        )

        proxy.pause()
        began = time.monotonic()
        down = {
            "healthz": client.get("/healthz"),
            "readyz": client.get("/readyz"),
            "sync": client.post("/api/etl/sync", json={"ubicacion_id": None}, headers=trigger),
            "runs": client.get("/api/etl/runs", headers=trigger),
            "sales": client.post("/api/etl/sync/ventas", json={}, headers=trigger),
        }
        answered_in = time.monotonic() - began

        proxy.resume()
        back = {  # (the first inventory run is still queued: the fake launcher never runs it)
            "readyz": client.get("/readyz"),
            "sync": client.post("/api/etl/sync/ventas", json={}, headers=trigger),
            "runs": client.get("/api/etl/runs", headers=trigger),
        }
    finally:
        client.close()
        engine.dispose()

    assert down["healthz"].status_code == 200
    assert down["readyz"].status_code == 503
    ready = down["readyz"].json()
    assert ready["ready"] is False
    assert ready["checks"]["database"] == "unreachable (OperationalError)"
    for route in ("sync", "runs", "sales"):
        assert down[route].status_code == 503, route
        body = down[route].json()
        assert body["success"] is False
        assert "database" in body["message"], body
        assert "Retry later" in body["message"]
    assert answered_in < 5, "refused at once, not after a hang"
    assert {name: a.status_code for name, a in back.items()} == {
        "readyz": 200,
        "sync": 202,
        "runs": 200,
    }, "the same app recovered without a restart"
    assert len(back["runs"].json()["runs"]) == 2
    assert services.launcher.launched == [r["id"] for r in reversed(back["runs"].json()["runs"])]


def _client(services: ServiceContext) -> TestClient:
    return TestClient(create_app(services.settings, services=services))
