"""The service's operations duties: wired into ``Service`` (alerts, metrics, auto-recovery on its
maintenance turn) and retention that removes only what outlived its setting (both dialects)."""

from __future__ import annotations

import warnings
from datetime import timedelta

from ops_support import TODAY, local, simulated_chain
from sqlalchemy import Engine, func, insert, select

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.ops.duties import apply_retention
from fluxion_etl.service import Service
from fluxion_etl.settings import Settings
from fluxion_etl.store import alerts as alert_store
from fluxion_etl.store import ledger, tokens
from fluxion_etl.store.schema import alerts, inventory_history, raw_payloads, run_logs

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = local(TODAY, 10)


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def finished_run(engine: Engine, *, at: object) -> int:
    with engine.begin() as conn:
        run_id = ledger.create_run(
            conn,
            RunRequest(job=Job.SALES, trigger=Trigger.CLI),
            now=at,  # type: ignore[arg-type]
        ).run_id
        ledger.append_log(conn, run_id, now=at, level="info", event="x", max_lines=10)  # type: ignore[arg-type]
        ledger.save_raw_payload(
            conn,
            run_id=run_id,
            location_id="tienda_01",
            call="ventas",
            category="bad_payload",
            body=b"{",
            now=at,
            max_bytes=100,  # type: ignore[arg-type]
        )
        ledger.finish_run(conn, run_id, RunStatus.FAILED, now=at)  # type: ignore[arg-type]
    return run_id


def test_retention_removes_only_what_outlived_its_setting(engine: Engine) -> None:
    settings = Settings(
        run_log_retention_days=30, raw_payload_retention_days=14, history_retention_days=90
    )
    old, recent = NOW - timedelta(days=31), NOW - timedelta(days=1)
    finished_run(engine, at=old)
    finished_run(engine, at=recent)
    with engine.begin() as conn:
        for at in (NOW - timedelta(days=91), recent):
            conn.execute(
                insert(inventory_history).values(
                    location_id="tienda_01",
                    warehouse_code="W",
                    sku="1",
                    change="changed",
                    changed_at=at,
                )
            )
            alert_id = alert_store.open_alert(
                conn,
                key=f"k{at}",
                kind="stale",
                job="sales",
                location_id="tienda_01",
                subject=None,
                summary="s",
                detail=None,
                now=at,
            )
            assert alert_id is not None
            alert_store.clear_alert(conn, alert_id, now=at)

    purged = apply_retention(engine, settings, NOW)

    assert purged == {"run_logs": 1, "raw_payloads": 1, "inventory_history": 1, "alerts": 1}
    assert count(engine, run_logs) == 1
    assert count(engine, raw_payloads) == 1
    assert count(engine, inventory_history) == 1
    assert count(engine, alerts) == 1


def test_the_service_evaluates_alerts_and_serves_metrics_on_its_maintenance_turn(
    sqlite_engine: Engine,
) -> None:
    with simulated_chain(sqlite_engine, start=NOW) as chain:
        settings = chain.settings.model_copy(update={"scheduler": "external", "auto_recover": True})
        clock = ManualClock(NOW)
        service = Service.open(settings, chain.config, clock)
        service.start()
        try:
            service.maintain_once()
            assert service.duties is not None
            evaluation = service.duties.last_evaluation
            assert evaluation is not None
            assert evaluation.conditions == 6  # nothing synced yet: both jobs stale at 3 stores
            with sqlite_engine.begin() as conn:
                secret = tokens.create_token(
                    conn, name="prom", scope=tokens.Scope.READ, now=NOW
                ).secret
            with TestClient(service.app()) as client:
                answer = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
            assert answer.status_code == 200
            assert 'fluxion_open_alerts{kind="stale"} 6.0' in answer.text
            clock.advance(seconds=30)
            service.maintain_once()
            assert service.duties.last_evaluation is evaluation  # next turn after 60 s
        finally:
            service.stop(grace=1)
