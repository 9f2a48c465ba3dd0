"""Control centre fixtures.

Fast tests use FastAPI's TestClient over the app with a fake launcher (``pages`` with a token per
scope). Browser tests (marked ``browser``) share one real stack per module and dialect: the KLK
simulator, ``fluxion-etl serve`` over a fresh database, and Debian's Chromium. Without
/usr/bin/chromium they are skipped, unless FLUXION_TEST_REQUIRE_BROWSER=1 (CI): then they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pages_support import NOW, SCOPES, FakeLauncher, Pages, TestClient
from sqlalchemy import create_engine
from web_support import LAPTOP, Stack, browser_missing_reason, chromium, running_stack

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.settings import Settings
from fluxion_etl.store import schedules, schema, tokens
from fluxion_etl.store.db import create_db_engine


@pytest.fixture
def pages(tmp_path: Path, migrated_sqlite_web: Path) -> Iterator[Pages]:
    """The app over a fresh SQLite copy, schedules seeded, a token per scope."""
    shutil.copyfile(migrated_sqlite_web, tmp_path / "web.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'web.db'}")
    clock, launcher = ManualClock(NOW), FakeLauncher()
    services = ServiceContext(
        settings=Settings(session_secret="test-secret-for-web-pages"),  # type: ignore[arg-type]
        config=load_config(None),
        engine=engine,
        launcher=launcher,
        clock=clock,
    )
    with engine.begin() as conn:
        schedules.seed_schedules(conn, schedules.definitions_from_config(services.config), NOW)
        secrets = {
            scope: tokens.create_token(conn, name=scope, scope=tokens.Scope(scope), now=NOW).secret
            for scope in SCOPES
        }
    with TestClient(create_app(services.settings, services=services)) as client:
        yield Pages(client, services, launcher, clock, secrets)
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite_web(_migrated_templates: dict[str, str]) -> Path:
    return Path(_migrated_templates["sqlite"])


# --- browser ------------------------------------------------------------------------------------


def require_browser() -> None:
    reason = browser_missing_reason()
    if reason is None:
        return
    if os.environ.get("FLUXION_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser tests are required (FLUXION_TEST_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


def _require_postgres(templates: dict[str, str]) -> str:
    if "postgresql" in templates:
        return templates["postgresql"]
    if os.environ.get("FLUXION_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is required (FLUXION_TEST_REQUIRE_POSTGRES=1)")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")


def module_database(dialect: str, directory: Path, templates: dict[str, str]) -> str:
    """A fresh database at the current schema for one module (see tests/conftest.py)."""
    if dialect == "sqlite":
        shutil.copyfile(templates["sqlite"], directory / "fluxion.db")
        return f"sqlite:///{directory / 'fluxion.db'}"
    name = _require_postgres(templates)
    admin = os.environ.get(
        "FLUXION_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _migrated_templates: dict[str, str],
) -> Iterator[Stack]:
    """A running service and simulator for the module's browser tests, once per dialect."""
    require_browser()
    directory = tmp_path_factory.mktemp(f"stack-{request.param}")
    url = module_database(request.param, directory, _migrated_templates)
    with running_stack(url, directory) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def signed_in(browser: Any, stack: Stack) -> dict[str, Any]:
    """The cookies of one login through the form, reused by every page of the module."""
    context = browser.new_context(viewport=LAPTOP)
    try:
        stack.login(context.new_page())
        state: dict[str, Any] = context.storage_state()
    finally:
        context.close()
    return state


@pytest.fixture
def page(browser: Any, stack: Stack, signed_in: dict[str, Any]) -> Iterator[Any]:
    """A logged-in laptop-sized page; confirmation dialogs are accepted."""
    context = browser.new_context(viewport=LAPTOP, storage_state=signed_in)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()
