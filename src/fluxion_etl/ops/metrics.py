"""Prometheus metrics, one registry per app (never prometheus_client's global default registry).

    OpsMetrics(engine, *, config, settings, clock, periods=None)
        .observe_klk_request(event)          the ``KlkClient(on_request=...)`` hook
        .follow()                            feed finished runs into the run histograms
        .render() -> (bytes, content_type)   the text exposition for ``GET /metrics``

Read from the database at scrape time, so they hold whatever process or task ran the runs, and
across restarts:
    fluxion_runs_total{job,status}                  finished runs in the ledger
    fluxion_abandoned_runs_total{job}               runs whose process died
    fluxion_missed_fires_total{schedule}            fires older than their maximum event age
    fluxion_last_success_age_seconds{job,location}  (absent while a location never succeeded)
    fluxion_stale{job,location}                     1 when stale (SPEC §4.12), else 0
    fluxion_open_gaps{location}                     gaps of the last ``gap_days`` (ops.gaps)
    fluxion_gap_seconds{location}                   their total length
    fluxion_open_alerts{kind}                       alerts open now
    fluxion_metrics_database_up                     0 when the database could not be read

Fed from the ledger as runs finish (followed from this process's start; any launcher):
    fluxion_run_duration_seconds{job}               histogram, start to finish
    fluxion_phase_duration_seconds{job,phase}       histogram per location: extract/transform/load
    fluxion_rows_total{job,action}                  fetched, inserted, updated, unchanged, ...

Observed in this process (runs executed inline, and those of its pool workers, which report
every KLK request over their pipe):
    fluxion_klk_request_duration_seconds{call}      histogram per HTTP attempt
    fluxion_klk_errors_total{call,category}

Labels are bounded: jobs, statuses, configured locations and schedules, KLK call names and error
categories; never a run id.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.states import FireOutcome, Job, RunStatus
from fluxion_etl.engine import freshness
from fluxion_etl.klk.client import RequestEvent
from fluxion_etl.ops.gaps import list_gaps, summarize
from fluxion_etl.settings import Settings
from fluxion_etl.store import sync_state
from fluxion_etl.store.schema import alerts, fires, run_items, runs

log = structlog.get_logger("fluxion.metrics")

RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
KLK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
PHASES = ("extract", "transform", "load")
ACTIONS = tuple(ItemCounters.__dataclass_fields__)
GAPS_CACHE_SECONDS = 60.0
FOLLOW_SLACK = timedelta(minutes=5)  # clocks of other processes may lag a little

Periods = Callable[[], Mapping[Job, timedelta] | None]


class OpsMetrics:
    def __init__(
        self,
        engine: Engine,
        *,
        config: ChainConfig,
        settings: Settings,
        clock: Clock,
        periods: Periods | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.periods = periods
        self._database = _DatabaseCollector(engine, config, settings, clock, self._periods)
        self.registry.register(self._database)
        self._follower = _LedgerFollower(engine, clock, self.registry)
        self.klk_seconds = Histogram(
            "fluxion_klk_request_duration_seconds",
            "KLK HTTP attempts by call, in seconds.",
            ["call"],
            buckets=KLK_BUCKETS,
            registry=self.registry,
        )
        self.klk_errors = Counter(
            "fluxion_klk_errors",
            "Failed KLK calls by call and error category.",
            ["call", "category"],
            registry=self.registry,
        )

    def _periods(self) -> Mapping[Job, timedelta] | None:
        return self.periods() if self.periods is not None else None

    def observe_klk_request(self, event: RequestEvent) -> None:
        self.klk_seconds.labels(event.call).observe(event.seconds)
        if event.category is not None:
            self.klk_errors.labels(event.call, event.category.value).inc()

    def follow(self) -> None:
        try:
            self._follower.follow()
        except SQLAlchemyError as exc:
            log.warning("metrics could not read finished runs", error=str(exc)[:200])

    def render(self) -> tuple[bytes, str]:
        self.follow()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LedgerFollower:
    """Observes each run once, when the ledger first shows it finished."""

    def __init__(self, engine: Engine, clock: Clock, registry: CollectorRegistry) -> None:
        self._engine, self._clock = engine, clock
        self._since = clock.now()
        self._seen: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self.run_seconds = Histogram(
            "fluxion_run_duration_seconds",
            "Finished runs by job, start to finish, in seconds.",
            ["job"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.phase_seconds = Histogram(
            "fluxion_phase_duration_seconds",
            "Per location of a finished run: seconds spent extracting, transforming, loading.",
            ["job", "phase"],
            buckets=PHASE_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "fluxion_rows",
            "Rows of finished runs by job and action (fetched, inserted, updated, ...).",
            ["job", "action"],
            registry=registry,
        )

    def follow(self) -> None:
        with self._lock, self._engine.connect() as conn:
            finished = conn.execute(
                select(runs.c.id, runs.c.job, runs.c.started_at, runs.c.finished_at).where(
                    runs.c.finished_at >= self._since - FOLLOW_SLACK
                )
            ).all()
            new = [row for row in finished if row.id not in self._seen]
            for row in new:
                self._observe_run(row.job, row.started_at, row.finished_at)
                self._seen[row.id] = row.finished_at
            if new:
                self._observe_items(conn, {row.id: str(row.job) for row in new})
            self._forget_old()

    def _observe_run(self, job: str, started: datetime | None, finished: datetime) -> None:
        if started is not None:
            self.run_seconds.labels(job).observe(max(0.0, (finished - started).total_seconds()))

    def _observe_items(self, conn: Connection, jobs: dict[int, str]) -> None:
        query = select(run_items).where(run_items.c.run_id.in_(list(jobs)))
        for item in conn.execute(query).mappings():
            job = jobs[item["run_id"]]
            if item["started_at"] is not None:
                for phase in PHASES:
                    self.phase_seconds.labels(job, phase).observe(item[f"{phase}_ms"] / 1000)
            for action in ACTIONS:
                if item[action]:
                    self.rows.labels(job, action).inc(item[action])

    def _forget_old(self) -> None:
        if self._seen:
            self._since = max(self._since, *self._seen.values())
        horizon = self._since - FOLLOW_SLACK
        self._seen = {run_id: at for run_id, at in self._seen.items() if at >= horizon}


class _DatabaseCollector(Collector):
    """Reads the ledger, sync state, fires, coverage and alerts at each scrape."""

    def __init__(
        self,
        engine: Engine,
        config: ChainConfig,
        settings: Settings,
        clock: Clock,
        periods: Callable[[], Mapping[Job, timedelta] | None],
    ) -> None:
        self._engine, self._config, self._settings, self._clock = engine, config, settings, clock
        self._periods = periods
        self._gaps: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # collected fresh at each scrape; nothing to describe up front

    def collect(self) -> Iterator[Metric]:
        try:
            with self._engine.connect() as conn:
                families = [
                    *self._runs(conn),
                    *self._fires(conn),
                    *self._freshness(conn),
                    *self._gap_families(conn),
                    self._alerts(conn),
                ]
        except SQLAlchemyError as exc:
            log.warning("metrics could not read the database", error=str(exc)[:200])
            yield _gauge("fluxion_metrics_database_up", "1 when the database was read.", 0)
            return
        yield _gauge("fluxion_metrics_database_up", "1 when the database was read.", 1)
        yield from families

    def _runs(self, conn: Connection) -> list[Metric]:
        total = CounterMetricFamily(
            "fluxion_runs", "Finished runs by job and status.", labels=["job", "status"]
        )
        abandoned = CounterMetricFamily(
            "fluxion_abandoned_runs", "Runs abandoned because their process died.", labels=["job"]
        )
        counts = conn.execute(
            select(runs.c.job, runs.c.status, func.count())
            .where(runs.c.status.not_in([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
            .group_by(runs.c.job, runs.c.status)
        ).all()
        by_job = {job.value: 0 for job in Job}
        for job, status, count in counts:
            total.add_metric([str(job), str(status)], count)
            if status == RunStatus.ABANDONED.value:
                by_job[str(job)] = by_job.get(str(job), 0) + count
        for job, count in by_job.items():
            abandoned.add_metric([job], count)
        return [total, abandoned]

    def _fires(self, conn: Connection) -> list[Metric]:
        missed = CounterMetricFamily(
            "fluxion_missed_fires",
            "Schedule fires missed (older than their maximum event age).",
            labels=["schedule"],
        )
        counts = conn.execute(
            select(fires.c.schedule_name, func.count())
            .where(fires.c.outcome == FireOutcome.MISSED.value)
            .group_by(fires.c.schedule_name)
        ).all()
        for schedule, count in counts:
            missed.add_metric([str(schedule)], count)
        return [missed]

    def _freshness(self, conn: Connection) -> list[Metric]:
        age = GaugeMetricFamily(
            "fluxion_last_success_age_seconds",
            "Seconds since the last success per job and location.",
            labels=["job", "location"],
        )
        stale = GaugeMetricFamily(
            "fluxion_stale", "1 when the data is stale (SPEC 4.12).", labels=["job", "location"]
        )
        states = {
            (s.job.value, s.location_id): s.last_success_at for s in sync_state.all_states(conn)
        }
        verdicts = freshness.judge_all(
            self._config.locations,
            states,
            now=self._clock.now(),
            deadlines=freshness.deadlines_from(self._settings.deadline_seconds),
            periods=self._periods(),
        )
        for verdict in verdicts:
            labels = [verdict.job.value, verdict.location_id]
            if verdict.age_seconds is not None:
                age.add_metric(labels, verdict.age_seconds)
            stale.add_metric(labels, 1 if verdict.stale else 0)
        return [age, stale]

    def _gap_families(self, conn: Connection) -> list[Metric]:
        """Gaps cost a query per location: computed at most once a minute."""
        if self._gaps is not None and _time.monotonic() - self._gaps[0] < GAPS_CACHE_SECONDS:
            return self._gaps[1]
        count = GaugeMetricFamily(
            "fluxion_open_gaps", "Sales gaps in opening hours (ops.gaps).", labels=["location"]
        )
        seconds = GaugeMetricFamily(
            "fluxion_gap_seconds", "Total length of the sales gaps.", labels=["location"]
        )
        gaps = summarize(
            list_gaps(conn, self._config, now=self._clock.now(), days=self._settings.gap_days)
        )
        for location in self._config.locations:
            if location.active and location.has_sales:
                found = gaps.get(location.id)
                count.add_metric([location.id], found.count if found else 0)
                seconds.add_metric([location.id], found.seconds if found else 0)
        families: list[Metric] = [count, seconds]
        self._gaps = (_time.monotonic(), families)
        return families

    def _alerts(self, conn: Connection) -> Metric:
        family = GaugeMetricFamily("fluxion_open_alerts", "Alerts open now.", labels=["kind"])
        counts = conn.execute(
            select(alerts.c.kind, func.count())
            .where(alerts.c.cleared_at.is_(None))
            .group_by(alerts.c.kind)
        ).all()
        for kind, number in counts:
            family.add_metric([str(kind)], number)
        return family


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)
