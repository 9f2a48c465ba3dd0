"""KlkClient against the KLK simulator served by uvicorn on loopback: the client decodes every call
the simulator answers, and the answers respect the request (warehouse, day, hours)."""

from __future__ import annotations

import threading
import time as clock
from collections.abc import Iterator
from datetime import UTC, date, datetime, time

import pytest
import uvicorn

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.sim.app import create_app
from fluxion_etl.sim.topology import SimLocation
from fluxion_etl.sim.world import SimWorld

DAY = date(2025, 11, 17)


@pytest.fixture(scope="module")
def world() -> SimWorld:
    now = ManualClock(datetime(2025, 11, 18, 3, 0, tzinfo=UTC))  # 23:00 in Caracas
    return SimWorld(locations=2, skus=300, lines_per_day=200, seed=7, clock=now)


@pytest.fixture(scope="module")
def sim_url(world: SimWorld) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(world), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = clock.monotonic() + 10
    while not server.started:
        assert clock.monotonic() < deadline, "simulator did not start"
        clock.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def store(world: SimWorld) -> SimLocation:
    return world.locations[0]


def _floor(store: SimLocation) -> str:
    warehouse = store.location.sales_warehouse
    assert warehouse is not None
    return warehouse.code


def test_warehouse_lists_decode(sim_url: str, store: SimLocation) -> None:
    with KlkClient(sim_url) as client:
        floors = client.warehouses("pisoventa").value
        branch = client.warehouses("Reposicion", store.branch_code).value

    assert _floor(store) in {w.warehouse_code for w in floors}
    assert {w.branch_code for w in branch} == {store.branch_code}


def test_catalogue_decodes_whole(sim_url: str, store: SimLocation) -> None:
    with KlkClient(sim_url) as client:
        fetched = client.catalogue(_floor(store))

    assert fetched.value.warehouse_code == _floor(store)
    assert len(fetched.value.items) == 300
    assert fetched.value.duplicates_removed == 0


def test_sales_of_a_day_and_of_an_hour_window(sim_url: str, store: SimLocation) -> None:
    zone = store.location.zone
    with KlkClient(sim_url) as client:
        day = client.sales(
            branch_code=store.branch_code, warehouse_code=_floor(store), day=DAY, zone=zone
        ).value
        window = client.sales(
            branch_code=store.branch_code, warehouse_code=_floor(store), day=DAY,
            start=time(9, 0), end=time(12, 0), zone=zone,
        ).value  # fmt: skip

    assert day.lines, "the simulator sells on a weekday"
    assert {line.business_day for line in day.lines} == {DAY}
    assert {line.warehouse_code for line in day.lines} == {_floor(store)}
    assert {line.key for line in window.lines} <= {line.key for line in day.lines}
    for line in window.lines:
        assert time(9, 0) <= line.sold_at.astimezone(zone).time() <= time(12, 0, 0, 999999)
