"""Fixtures of the reliability tests: the engine tests' small simulated chain (three stores and a
distribution centre served over loopback, one manual clock), on a database of each dialect; and
the API tests' app over a fresh SQLite copy with a token per scope."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api
from engine_support import NOW, Chain, build_world, chain_config, fast_settings
from sqlalchemy import Engine

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.store.db import create_db_engine


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


@pytest.fixture
def api(tmp_path: Path, _migrated_templates: dict[str, str]) -> Iterator[Api]:
    shutil.copyfile(_migrated_templates["sqlite"], tmp_path / "api.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'api.db'}")
    try:
        yield from build_api(engine)
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path, _migrated_templates: dict[str, str]) -> Iterator[Engine]:
    """SQLite only, for scenarios whose dialect-specific parts are tested on both elsewhere."""
    shutil.copyfile(_migrated_templates["sqlite"], tmp_path / "fluxion.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'fluxion.db'}")
    try:
        yield engine
    finally:
        engine.dispose()
