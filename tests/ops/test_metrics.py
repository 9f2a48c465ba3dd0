"""``GET /metrics``: Prometheus text that ``prometheus_client.parser`` reads, with freshness that
moves as runs succeed, run and KLK measurements, and a read or scrape-only token."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from ops_support import TODAY, Chain, NullLauncher, local, simulated_chain
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.domain.states import Job
from fluxion_etl.store import tokens
from fluxion_etl.store.schema import run_items

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Scraper:
    chain: Chain
    services: ServiceContext
    client: TestClient
    token: str

    def scrape(self, token: str | None = None) -> Samples:
        answer = self.client.get(
            "/metrics", headers={"Authorization": f"Bearer {token or self.token}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def scraper(engine: Engine) -> Iterator[Scraper]:
    with build_scraper(engine) as built:
        yield built


@pytest.fixture
def sqlite_scraper(sqlite_engine: Engine) -> Iterator[Scraper]:
    with build_scraper(sqlite_engine) as built:
        yield built


@contextmanager
def build_scraper(engine: Engine) -> Iterator[Scraper]:
    with simulated_chain(
        engine, start=local(TODAY, 10), metrics_token="scrape-only-secret"
    ) as chain:
        services = ServiceContext(
            settings=chain.settings,
            config=chain.config,
            engine=chain.engine,
            launcher=NullLauncher(),
            clock=chain.clock,
        )
        assert services.metrics is not None
        chain.on_request = services.metrics.observe_klk_request
        with chain.engine.begin() as conn:
            token = tokens.create_token(
                conn, name="grafana", scope=tokens.Scope.READ, now=chain.clock.now()
            ).secret
        app = create_app(chain.settings, services=services)
        with TestClient(app) as client:
            yield Scraper(chain, services, client, token)


def test_the_exposition_parses_and_names_every_documented_family(scraper: Scraper) -> None:
    scraper.chain.run(Job.INVENTORY)
    scraper.chain.run(Job.SALES)

    samples = scraper.scrape()

    names = {name for name, _ in samples}
    for family in (
        "fluxion_runs_total",
        "fluxion_abandoned_runs_total",
        "fluxion_last_success_age_seconds",
        "fluxion_stale",
        "fluxion_open_gaps",
        "fluxion_gap_seconds",
        "fluxion_run_duration_seconds_count",
        "fluxion_phase_duration_seconds_bucket",
        "fluxion_rows_total",
        "fluxion_klk_request_duration_seconds_count",
        "fluxion_metrics_database_up",
    ):
        assert family in names, family
    assert all("run_id" not in dict(labels) for _, labels in samples)
    assert value(samples, "fluxion_metrics_database_up") == 1


def test_the_freshness_gauges_move_as_runs_succeed(sqlite_scraper: Scraper) -> None:
    scraper = sqlite_scraper
    before = scraper.scrape()
    assert value(before, "fluxion_stale", job="sales", location="tienda_01") == 1
    assert (
        value(before, "fluxion_last_success_age_seconds", job="sales", location="tienda_01") is None
    )

    scraper.chain.run(Job.SALES)
    scraper.chain.clock.advance(minutes=10)
    after = scraper.scrape()

    assert value(after, "fluxion_stale", job="sales", location="tienda_01") == 0
    assert (
        value(after, "fluxion_last_success_age_seconds", job="sales", location="tienda_01") == 600
    )
    assert value(after, "fluxion_stale", job="inventory", location="tienda_01") == 1


def test_runs_rows_and_klk_requests_are_counted(scraper: Scraper) -> None:
    scraper.chain.run(Job.SALES)
    scraper.chain.fault("sales@tienda_03:http_500")
    scraper.chain.clock.advance(minutes=30)
    scraper.chain.run(Job.SALES)

    samples = scraper.scrape()

    assert value(samples, "fluxion_runs_total", job="sales", status="succeeded") == 1
    assert value(samples, "fluxion_runs_total", job="sales", status="partial") == 1
    assert value(samples, "fluxion_run_duration_seconds_count", job="sales") == 2
    assert value(samples, "fluxion_phase_duration_seconds_count", job="sales", phase="load") == 6
    with scraper.chain.engine.connect() as conn:
        inserted = conn.execute(select(func.sum(run_items.c.inserted))).scalar_one()
    assert inserted > 0
    assert value(samples, "fluxion_rows_total", job="sales", action="inserted") == inserted
    # yesterday and today for each store, then one window each (tienda_03's fails)
    assert value(samples, "fluxion_klk_request_duration_seconds_count", call="ventas") == 9
    assert value(samples, "fluxion_klk_errors_total", call="ventas", category="http_status") == 1

    again = scraper.scrape()  # a run is counted once, however often it is scraped
    assert value(again, "fluxion_run_duration_seconds_count", job="sales") == 2


def test_a_scrape_needs_a_read_token_or_the_scrape_token(sqlite_scraper: Scraper) -> None:
    scraper = sqlite_scraper
    assert scraper.client.get("/metrics").status_code == 401
    wrong = scraper.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "fluxion_stale" in {name for name, _ in scraper.scrape("scrape-only-secret")}
    assert scraper.scrape(scraper.token)
