"""The operations duties of a service process, run from its maintenance loop on the service clock.

    OpsDuties(engine, *, config, settings, clock, launch, owner, periods=None, env=os.environ)
        .tick()      due work now; cheap when nothing is due
        .close()     give up the alerts lock (another process takes over at once)

Every ``alerts_interval_seconds`` the process that holds the ``alerts`` lock (one of all the
``serve`` processes sharing the database: alerts go out once) evaluates the alerts, then starts
the due automatic gap recoveries (``FLUXION_AUTO_RECOVER``, bounded: ``ops.recover``). Once an
hour it applies retention: logs and raw payloads of runs finished more than
``run_log_retention_days`` ago, raw payloads older than ``raw_payload_retention_days``, inventory
history older than ``history_retention_days``, and alerts cleared (and messages sent) before that.

A failure in one duty is logged and never stops the maintenance loop (reaping runs matters more).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.states import Job
from fluxion_etl.ops.alerts import LOCK_NAME, AlertEvaluator, Evaluation
from fluxion_etl.ops.channels import channels_from_config
from fluxion_etl.ops.recover import RecoveryRun, auto_recover
from fluxion_etl.settings import Settings
from fluxion_etl.store import alerts as alert_store
from fluxion_etl.store import ledger, loader
from fluxion_etl.store.service_locks import unlock

log = structlog.get_logger("fluxion.ops")
T = TypeVar("T")

RETENTION_EVERY = timedelta(hours=1)
LOCK_TURNS = 3  # the lock outlives a few missed turns before another process takes over


class OpsDuties:
    def __init__(
        self,
        engine: Engine,
        *,
        config: ChainConfig,
        settings: Settings,
        clock: Clock,
        launch: Callable[[int], None],
        owner: str,
        periods: Callable[[], Mapping[Job, timedelta]] | None = None,
        env: Mapping[str, str] = os.environ,
        http: httpx.Client | None = None,
    ) -> None:
        self.engine, self.config, self.settings, self.clock = engine, config, settings, clock
        self.launch, self.owner = launch, owner
        self._own_http = http is None
        self.http = http or httpx.Client()
        self.evaluator = AlertEvaluator(
            engine,
            config=config,
            settings=settings,
            clock=clock,
            channels=channels_from_config(config.alerts, env=env, http=self.http),
            http=self.http,
            periods=periods,
        )
        self._interval = timedelta(seconds=settings.alerts_interval_seconds)
        self._next_turn: datetime | None = None
        self._next_retention: datetime | None = None
        self.last_evaluation: Evaluation | None = None
        self.last_recoveries: list[RecoveryRun] = []

    def tick(self) -> None:
        now = self.clock.now()
        if self._next_turn is not None and now < self._next_turn:
            return
        self._next_turn = now + self._interval
        evaluation = self._guarded("alert evaluation", self._evaluate)
        if evaluation is None:  # another process leads, or the evaluation failed
            return
        if self.settings.auto_recover:
            self._guarded("automatic gap recovery", self._recover)
        if self._next_retention is None or now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY
            self._guarded("retention", lambda: apply_retention(self.engine, self.settings, now))

    def _evaluate(self) -> Evaluation | None:
        ttl = LOCK_TURNS * self._interval
        self.last_evaluation = self.evaluator.evaluate_if_leader(self.owner, ttl)
        return self.last_evaluation

    def _recover(self) -> list[RecoveryRun]:
        started = auto_recover(
            self.engine,
            config=self.config,
            settings=self.settings,
            clock=self.clock,
            launch=self.launch,
        )
        for run in started:
            log.info(
                "gap recovery started",
                run_id=run.run_id,
                location_id=run.location_id,
                days=[day.isoformat() for day in run.gap_days],
            )
        self.last_recoveries = started
        return started

    def _guarded(self, what: str, duty: Callable[[], T]) -> T | None:
        try:
            return duty()
        except SQLAlchemyError as exc:  # the database may be down: try again next turn
            log.warning(f"{what} skipped", error=str(exc).splitlines()[0][:200])
        except Exception as exc:  # a bug in one duty must not stop the maintenance loop
            log.exception(f"{what} failed", error=str(exc)[:200])
        return None

    def close(self) -> None:
        try:
            with self.engine.begin() as conn:
                unlock(conn, LOCK_NAME, owner=self.owner)
        except Exception as exc:  # the lock expires by itself
            log.warning("alerts lock not released; it will expire", error=str(exc)[:200])
        if self._own_http:
            self.http.close()


def apply_retention(engine: Engine, settings: Settings, now: datetime) -> dict[str, int]:
    """Delete what outlived its retention setting; returns how many rows of each kind."""
    days = timedelta(days=1)
    with engine.begin() as conn:
        runs = ledger.purge_runs(conn, older_than=now - settings.run_log_retention_days * days)
        payloads = ledger.purge_raw_payloads(
            conn, older_than=now - settings.raw_payload_retention_days * days
        )
        history = loader.purge_history(
            conn, older_than=now - settings.history_retention_days * days
        )
        alerts = alert_store.purge(conn, older_than=now - settings.history_retention_days * days)
    purged = {
        "run_logs": runs.logs,
        "raw_payloads": runs.payloads + payloads,
        "inventory_history": history,
        "alerts": alerts,
    }
    if any(purged.values()):
        log.info("retention applied", **purged)
    return purged
