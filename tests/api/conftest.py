"""API fixtures: the API over a fresh database (SQLite, or each dialect), with a token per scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import (
    NOW,
    Api,
    FakeLauncher,
    build_api,
    copied_sqlite,
    make_services,
    make_tokens,
    served_on_loopback,
)
from sqlalchemy import Engine

from fluxion_etl.api.app import create_app
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.store.db import create_db_engine, upgrade


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file at the current schema; each test gets a copy (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("template") / "api.db"
    eng = create_db_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture
def sqlite_engine(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Engine]:
    yield from copied_sqlite(migrated_sqlite, tmp_path / "api.db")


@pytest.fixture
def api(sqlite_engine: Engine) -> Iterator[Api]:
    """The API over SQLite (most behaviour does not depend on the dialect)."""
    yield from build_api(sqlite_engine)


@pytest.fixture
def served(engine: Engine) -> Iterator[tuple[str, str, FakeLauncher]]:
    """(base URL, trigger token, launcher): the API served by uvicorn on loopback."""
    launcher = FakeLauncher()
    services = make_services(engine, ManualClock(NOW), launcher)
    token = make_tokens(engine, NOW)["trigger"]
    with served_on_loopback(create_app(services.settings, services=services)) as url:
        yield url, token, launcher


@pytest.fixture
def api_both(engine: Engine) -> Iterator[Api]:
    """The API over each dialect (``engine`` from tests/conftest.py)."""
    yield from build_api(engine)
