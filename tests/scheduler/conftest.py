"""Fixtures of the scheduler tests: the bundled chain and default settings."""

from __future__ import annotations

import pytest

from fluxion_etl.config import ChainConfig, load_config
from fluxion_etl.settings import Settings


@pytest.fixture
def config() -> ChainConfig:
    return load_config(None)


@pytest.fixture
def settings() -> Settings:
    return Settings()
