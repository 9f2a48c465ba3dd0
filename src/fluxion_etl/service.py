"""One service process: API, launcher, maintenance and (embedded) scheduler, built from settings.

    Service.open(settings, config, clock)      engine, KLK client, runtime, launcher, context
    service.start()                            locations and schedules seeded, background loops
    service.app()                              the FastAPI app over the service's context
    service.stop(grace)                        no new work; running locations finish within grace

Maintenance runs in every live process, on its own clock tick (SPEC §4.3): reap runs whose lease
expired, relaunch runs queued but never handed off (a crash between queueing and launching), let
the launcher notice dead executions; then the operations duties (``ops.duties``): alerts and
automatic gap recovery in the one process holding the alerts lock, and retention hourly.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock, real_seconds
from fluxion_etl.domain.schedules import upcoming_fires
from fluxion_etl.domain.states import Job, RunStatus
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.klk.client import KlkClient, RequestEvent
from fluxion_etl.launchers import Launcher, LaunchError
from fluxion_etl.ops.duties import OpsDuties
from fluxion_etl.ops.metrics import OpsMetrics
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.scheduler.fires import submitting_fire
from fluxion_etl.settings import Settings
from fluxion_etl.store import leases, ledger, loader, schedules
from fluxion_etl.store.db import check_schema, create_db_engine, read_only_engine

log = structlog.get_logger("fluxion.service")

RELAUNCH_AFTER = timedelta(seconds=30)
MAINTENANCE_SECONDS = 5.0


def make_launcher(
    rt: Runtime, *, on_request: Callable[[RequestEvent], None] | None = None
) -> Launcher:
    """``on_request``: sees the KLK HTTP attempts of runs executed in other processes, where
    the launcher can collect them (``pool``); runs executed inline use ``rt.klk``'s own hook."""
    settings = rt.settings
    if settings.launcher == "subprocess":
        from fluxion_etl.launchers.subprocess import SubprocessLauncher

        return SubprocessLauncher(rt.engine, rt.clock, nice=settings.subprocess_worker_nice)
    if settings.launcher == "pool":
        from fluxion_etl.launchers.pool import PoolLauncher, WorkerSetup

        setup = WorkerSetup(settings, rt.config, nice=settings.subprocess_worker_nice)
        return PoolLauncher(
            rt.engine, rt.clock, setup, workers=settings.pool_workers, on_request=on_request
        )
    if settings.launcher == "ecs":
        from fluxion_etl.launchers.ecs import EcsLauncher

        return EcsLauncher.from_settings(settings, rt.engine, rt.clock)
    from fluxion_etl.launchers.inline import InlineLauncher

    return InlineLauncher(rt)


@dataclass
class Service:
    rt: Runtime
    launcher: Launcher
    context: ServiceContext
    scheduler: EmbeddedScheduler | None = None
    duties: OpsDuties | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings, config: ChainConfig, clock: Clock) -> Service:
        engine = create_db_engine(settings.database_url)
        check_schema(engine)
        # Scrapes only read: on SQLite they must never queue behind a load's write lock.
        metrics = OpsMetrics(
            read_only_engine(engine), config=config, settings=settings, clock=clock
        )
        rt = Runtime(
            settings=settings,
            config=config,
            engine=engine,
            klk=KlkClient.from_settings(settings, on_request=metrics.observe_klk_request),
            clock=clock,
        )
        launcher = make_launcher(rt, on_request=metrics.observe_klk_request)
        context = ServiceContext(
            settings=settings,
            config=config,
            engine=engine,
            launcher=launcher,
            clock=clock,
            metrics=metrics,
        )
        service = cls(rt=rt, launcher=launcher, context=context)
        context.schedule_periods = service.schedule_periods
        rt.stop_requested = service._stop.is_set
        return service

    def start(self) -> None:
        self._seed()
        if self.rt.settings.scheduler == "embedded":
            fire = submitting_fire(
                self.rt.engine,
                config=self.rt.config,
                settings=self.rt.settings,
                clock=self.rt.clock,
                launcher=self.launcher.name,
                on_created=self.launch,
            )
            self.scheduler = EmbeddedScheduler(self.rt.engine, self.rt.clock, fire)
            self.scheduler.start()
            self.context.scheduler_alive = self.scheduler.is_alive
        self.duties = OpsDuties(
            self.rt.engine,
            config=self.rt.config,
            settings=self.rt.settings,
            clock=self.rt.clock,
            launch=self.launch,
            owner=self.rt.owner,
            periods=self.schedule_periods,
        )
        thread = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
        thread.start()
        self._threads.append(thread)

    def app(self) -> FastAPI:
        return create_app(self.rt.settings, services=self.context)

    def launch(self, run_id: int) -> None:
        """Hand a queued run to the launcher; a failed hand-off fails the run (category launch)."""
        try:
            self.launcher.launch(run_id)
        except LaunchError as exc:
            with self.rt.engine.begin() as conn:
                ledger.finish_run(
                    conn,
                    run_id,
                    RunStatus.FAILED,
                    now=self.rt.clock.now(),
                    error_category="launch",
                    error_message=str(exc),
                )
            log.error("launch failed", run_id=run_id, error=str(exc))

    def stop(self, grace: float = 30.0) -> None:
        """Stop taking work; running locations get ``grace`` seconds, the rest is left."""
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.launcher.close(grace)
        for thread in self._threads:
            thread.join(timeout=MAINTENANCE_SECONDS + 1)
        if self.duties is not None:
            self.duties.close()
        self.rt.klk.close()
        self.rt.engine.dispose()

    def schedule_periods(self) -> dict[Job, timedelta]:
        """The usual period of each job's enabled schedules (median gap between its next fires),
        for the freshness rule (SPEC §4.12)."""
        now = self.rt.clock.now()
        with self.rt.engine.connect() as conn:
            stored = schedules.list_schedules(conn)
        periods: dict[Job, timedelta] = {}
        for entry in stored:
            definition = entry.definition
            if not definition.enabled:
                continue
            fires = upcoming_fires(definition, now, 49)
            gaps = sorted(b - a for a, b in itertools.pairwise(fires))
            if gaps:
                job = Job(definition.job)
                median = gaps[len(gaps) // 2]
                periods[job] = min(periods.get(job, median), median)
        return periods

    def _seed(self) -> None:
        now = self.rt.clock.now()
        with self.rt.engine.begin() as conn:
            loader.upsert_locations(conn, self.rt.config.locations, now)
            report = schedules.seed_schedules(
                conn, schedules.definitions_from_config(self.rt.config), now
            )
        log.info("seeded", locations=len(self.rt.config.locations), schedules=str(report))

    def _maintain(self) -> None:
        interval = real_seconds(MAINTENANCE_SECONDS, self.rt.clock)
        while not self._stop.wait(interval):
            try:
                self.maintain_once()
            except SQLAlchemyError as exc:  # the database may be down; try again next tick
                log.warning("maintenance skipped", error=str(exc).splitlines()[0][:200])

    def maintain_once(self) -> None:
        rt, now = self.rt, self.rt.clock.now()
        ttl = timedelta(seconds=rt.settings.lease_ttl_seconds)
        with rt.engine.begin() as conn:
            reaped = leases.reap_expired(conn, now=now, ttl=ttl)
            stale = ledger.list_runs(conn, status=RunStatus.QUEUED.value, limit=100)
        if reaped:
            log.warning("runs abandoned: their process stopped heartbeating", runs=reaped)
        for run in stale:
            held = self.launcher.holds(run.id)  # waiting for a free thread or worker
            if run.external_ref is None and run.created_at < now - RELAUNCH_AFTER and not held:
                log.warning("relaunching a run queued but never launched", run_id=run.id)
                self.launch(run.id)
        self.launcher.poll()
        if self.duties is not None:
            self.duties.tick()
