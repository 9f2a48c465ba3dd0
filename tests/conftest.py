"""Shared fixtures: a fresh database per test on both dialects (SQLite file, PostgreSQL database).

PostgreSQL tests need the server on 127.0.0.1:5432 (trust auth). Locally they are skipped when it is
down; with FLUXION_TEST_REQUIRE_POSTGRES=1 (CI) they fail instead, so CI cannot pass without them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from fluxion_etl.store import schema

PG_ADMIN_URL = os.environ.get(
    "FLUXION_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SAMPLES = Path(__file__).parent / "fixtures" / "klk-samples"


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


_PG_OK: bool | None = None


def require_postgres() -> None:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _pg_available()
    if not _PG_OK:
        if os.environ.get("FLUXION_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "PostgreSQL on 127.0.0.1:5432 is required (FLUXION_TEST_REQUIRE_POSTGRES=1)"
            )
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def _pg_database(template: str | None = None) -> Iterator[str]:
    name = f"fluxion_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    suffix = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    require_postgres()
    with _pg_database() as name:
        yield _pg_url(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fluxion.db'}"


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Migrate once per session; each test then copies the result (a file, or CREATE … TEMPLATE)."""
    from fluxion_etl.store.db import create_db_engine, upgrade

    out: dict[str, str] = {}
    sqlite_file = tmp_path_factory.mktemp("template") / "template.db"
    eng = create_db_engine(f"sqlite:///{sqlite_file}")
    upgrade(eng)
    eng.dispose()  # the last connection closing checkpoints the WAL into the file
    out["sqlite"] = str(sqlite_file)
    with ExitStack() as stack:
        if _PG_OK is None or _PG_OK:
            try:
                require_postgres()
            except pytest.skip.Exception:
                pass
            else:
                name = stack.enter_context(_pg_database())
                eng = create_db_engine(_pg_url(name))
                upgrade(eng)
                eng.dispose()
                out["postgresql"] = name
        yield out


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(
    request: pytest.FixtureRequest, tmp_path: Path, _migrated_templates: dict[str, str]
) -> Iterator[str]:
    """A fresh database URL at the current schema, once per dialect (for tests of processes)."""
    with _fresh_migrated(request.param, tmp_path, _migrated_templates) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database URL, once per dialect."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, _migrated_templates: dict[str, str], tmp_path: Path
) -> Iterator[Engine]:
    """An engine on a fresh database with the current schema, once per dialect."""
    from fluxion_etl.store.db import create_db_engine

    with _fresh_migrated(request.param, tmp_path, _migrated_templates) as url:
        eng = create_db_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


@contextmanager
def _fresh_migrated(dialect: str, tmp_path: Path, templates: dict[str, str]) -> Iterator[str]:
    """SQLite: a copy of the migrated file. PostgreSQL: the session's migrated database, emptied
    (much cheaper than CREATE/DROP DATABASE, which checkpoint the whole cluster)."""
    if dialect == "sqlite":
        target = tmp_path / "fluxion.db"
        shutil.copyfile(templates["sqlite"], target)
        yield f"sqlite:///{target}"
        return
    require_postgres()
    url = _pg_url(templates["postgresql"])
    eng = create_engine(url)
    with eng.begin() as conn:  # DELETE beats TRUNCATE on tiny tables (no new relation files)
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    eng.dispose()
    yield url


# --- the short soak, beside the suite ------------------------------------------------------------

SOAK_TEST = "tests/soak/test_soak_short.py::test_short_soak_loses_duplicates_and_strands_nothing"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the soak at once when its test was collected: it runs beside the rest of the suite
    (it mostly waits on its simulated clock) and its test collects the verdict."""
    if session.config.option.collectonly or not any(
        item.nodeid == SOAK_TEST for item in session.items
    ):
        return
    from soak_background import SOAK

    from fluxion_etl.soak.cluster import find_bindir

    if find_bindir() is not None:
        SOAK.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A session that ends before the soak's test (``-x``, Ctrl-C) interrupts the soak."""
    import sys

    module = sys.modules.get("soak_background")
    if module is not None:
        module.SOAK.stop()
