"""Fixtures of the operations tests; the chains and receivers are in ``ops_support``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from fluxion_etl.store.db import create_db_engine


@pytest.fixture
def sqlite_engine(tmp_path: Path, _migrated_templates: dict[str, str]) -> Iterator[Engine]:
    """SQLite only, for end-to-end tests whose dialect-specific parts are tested on both."""
    target = tmp_path / "fluxion.db"
    shutil.copyfile(_migrated_templates["sqlite"], target)
    engine = create_db_engine(f"sqlite:///{target}")
    try:
        yield engine
    finally:
        engine.dispose()
