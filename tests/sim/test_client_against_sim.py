"""The product's KLK client against the simulator over real HTTP: fault → error category, attempts.

Retries happen only on transient failures (connection errors, timeouts, 502/503/504); the
simulator's fault log counts how many attempts reached it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sim_helpers import MONDAY_EVENING

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.records import Catalogue, SalesBatch
from fluxion_etl.domain.states import ErrorCategory
from fluxion_etl.errors import KlkError
from fluxion_etl.klk.client import KlkClient, KlkTimeouts, RequestEvent, RetryPolicy
from fluxion_etl.sim.faults import FaultPlan, parse_faults
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld

CARACAS = ZoneInfo("America/Caracas")
DAY = MONDAY_EVENING.date()
READ_TIMEOUT = 0.5


def client_for(
    url: str, *, attempts: int = 3, events: list[RequestEvent] | None = None
) -> KlkClient:
    return KlkClient(
        url,
        timeouts=KlkTimeouts(connect=1, catalogue_read=READ_TIMEOUT, sales_read=READ_TIMEOUT),
        retry=RetryPolicy(attempts=attempts, initial_wait=0, max_wait=0),
        on_request=None if events is None else events.append,
    )


@pytest.fixture
def klk(sim_url: str) -> Iterator[KlkClient]:
    with client_for(sim_url) as client:
        yield client


def fetch_sales_batch(klk: KlkClient) -> SalesBatch:
    return klk.sales(branch_code="SUC001", warehouse_code="APP-TPF", day=DAY, zone=CARACAS).value


def fetch_catalogue(klk: KlkClient) -> Catalogue:
    return klk.catalogue("APP-TPF").value


@pytest.mark.parametrize(
    ("faults", "category", "attempts"),
    [
        ("sales@tienda_01:http_500", ErrorCategory.HTTP_STATUS, 1),
        ("sales@tienda_01:http_503", ErrorCategory.HTTP_STATUS, 3),
        ("sales@tienda_01:error_body", ErrorCategory.ERROR_BODY, 1),
        ("sales@tienda_01:truncated_json", ErrorCategory.BAD_PAYLOAD, 1),
        ("sales@tienda_01:count_mismatch", ErrorCategory.COUNT_MISMATCH, 1),
        ("sales@tienda_01:hang", ErrorCategory.TIMEOUT, 3),
        ("catalogue@tienda_01:http_503", ErrorCategory.HTTP_STATUS, 3),
        ("catalogue@tienda_01:count_mismatch=-5", ErrorCategory.COUNT_MISMATCH, 1),
        ("catalogue@tienda_01:error_body", ErrorCategory.ERROR_BODY, 1),
    ],
)
def test_each_fault_fails_with_its_category_after_the_right_attempts(
    klk: KlkClient, plan: FaultPlan, faults: str, category: ErrorCategory, attempts: int
) -> None:
    plan.replace(parse_faults(faults))
    fetch = fetch_sales_batch if faults.startswith("sales") else fetch_catalogue
    with pytest.raises(KlkError) as failure:
        fetch(klk)
    assert failure.value.category is category
    assert sum(plan.counts().values()) == attempts


def test_a_transient_fault_that_clears_is_retried_to_success(
    klk: KlkClient, plan: FaultPlan
) -> None:
    plan.replace(parse_faults("sales@tienda_01:http_503:n=2;sales@tienda_01:latency=0.05"))
    fetched = klk.sales(branch_code="SUC001", warehouse_code="APP-TPF", day=DAY, zone=CARACAS)
    assert fetched.attempts == 3
    assert fetched.value.lines


def test_a_hanging_call_fails_within_its_read_timeout_plus_a_second(
    world: SimWorld, plan: FaultPlan
) -> None:
    plan.replace(parse_faults("catalogue@*:hang"))
    with running_simulator(world, plan) as url, client_for(url, attempts=1) as klk:
        started = time.monotonic()
        with pytest.raises(KlkError) as failure:
            klk.catalogue("APP-TPF")
        assert time.monotonic() - started < READ_TIMEOUT + 1
    assert failure.value.category is ErrorCategory.TIMEOUT


def test_a_stopped_server_is_a_network_error_after_every_attempt(world: SimWorld) -> None:
    with running_simulator(world) as url:
        pass
    events: list[RequestEvent] = []
    with client_for(url, events=events) as klk, pytest.raises(KlkError) as failure:
        klk.catalogue("APP-TPF")
    assert failure.value.category is ErrorCategory.NETWORK
    assert [e.attempt for e in events] == [1, 2, 3]


def test_a_clean_day_decodes_to_the_truth(klk: KlkClient, world: SimWorld) -> None:
    batch = fetch_sales_batch(klk)
    truth = world.truth_sales("tienda_01", DAY)
    assert {line.key for line in batch.lines} == truth.keys
    assert sum((line.total_usd for line in batch.lines), Decimal(0)) == truth.total_usd
    assert sum((line.total_bs for line in batch.lines), Decimal(0)) == truth.total_bs
    assert all(line.business_day == DAY for line in batch.lines)


def test_duplicates_are_removed_and_voids_disappear_on_the_next_read(
    klk: KlkClient, plan: FaultPlan, world: SimWorld, clock: ManualClock
) -> None:
    plan.replace(
        parse_faults("sales@tienda_01:duplicate_lines=5:n=1;sales@tienda_01:void_lines=3:n=1")
    )
    first = fetch_sales_batch(klk)
    assert first.duplicates_removed == 5
    clock.advance(60)
    second = fetch_sales_batch(klk)
    assert len({line.key for line in first.lines} - {line.key for line in second.lines}) == 3
    assert {line.key for line in second.lines} == world.truth_sales("tienda_01", DAY).keys


def test_empty_sales_decode_as_an_empty_batch(klk: KlkClient, plan: FaultPlan) -> None:
    plan.replace(parse_faults("sales@tienda_01:empty_sales"))
    batch = fetch_sales_batch(klk)
    assert (batch.lines, batch.declared_count) == ((), 0)


def test_a_catalogue_decodes_to_the_truth_of_that_moment(klk: KlkClient, world: SimWorld) -> None:
    catalogue = fetch_catalogue(klk)
    truth = world.last_catalogue("APP-TPF")
    assert truth is not None
    assert {item.sku: item.stock for item in catalogue.items} == truth.stock
    assert {item.sku: item.price_usd for item in catalogue.items} == truth.price_usd


def test_the_warehouse_lists_decode(klk: KlkClient) -> None:
    branch = klk.warehouses("Reposicion", "SUC001").value
    assert [w.warehouse_code for w in branch] == ["APP-TPF", "PPF", "DPF"]
    floors = klk.warehouses("pisoventa").value
    assert "PCDICS" not in {w.warehouse_code for w in floors}
