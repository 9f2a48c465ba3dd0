"""API fixtures: the API over a fresh database (SQLite, or each dialect), with a token per scope."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import Api, build_api
from sqlalchemy import Engine

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
    shutil.copyfile(migrated_sqlite, tmp_path / "api.db")
    eng = create_db_engine(f"sqlite:///{tmp_path / 'api.db'}")
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def api(sqlite_engine: Engine) -> Iterator[Api]:
    """The API over SQLite (most behaviour does not depend on the dialect)."""
    yield from build_api(sqlite_engine)


@pytest.fixture
def api_both(engine: Engine) -> Iterator[Api]:
    """The API over each dialect (``engine`` from tests/conftest.py)."""
    yield from build_api(engine)
