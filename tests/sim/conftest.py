"""Fixtures of the simulator tests: a small world on a manual clock, and it served on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sim_helpers import MONDAY_EVENING, small_world

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MONDAY_EVENING)


@pytest.fixture
def world(clock: ManualClock) -> SimWorld:
    return small_world(clock)


@pytest.fixture
def plan(world: SimWorld) -> FaultPlan:
    return FaultPlan(seed=world.seed)


@pytest.fixture
def sim_url(world: SimWorld, plan: FaultPlan) -> Iterator[str]:
    with running_simulator(world, plan) as url:
        yield url


@pytest.fixture
def http(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=10) as client:
        yield client
