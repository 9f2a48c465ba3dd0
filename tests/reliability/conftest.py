"""Fixtures of the reliability tests: the engine tests' small simulated chain (three stores and a
distribution centre served over loopback, one manual clock), on a database of each dialect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_support import NOW, Chain, build_world, chain_config, fast_settings
from sqlalchemy import Engine

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.server import running_simulator


@pytest.fixture
def chain(engine: Engine) -> Iterator[Chain]:
    clock = ManualClock(NOW)
    world = build_world(clock)
    plan = FaultPlan(seed=world.seed)
    with running_simulator(world, plan) as url:
        built = Chain(
            engine=engine,
            world=world,
            plan=plan,
            clock=clock,
            url=url,
            config=chain_config(world),
            settings=fast_settings(str(engine.url), url),
        )
        try:
            yield built
        finally:
            built.close()
