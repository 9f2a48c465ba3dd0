"""Engines and schema lifecycle on both dialects: pragmas, serialised writes, migrations, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

import fluxion_etl
from fluxion_etl.cli import db as db_cli
from fluxion_etl.errors import SchemaNotReadyError
from fluxion_etl.store import db as db_module
from fluxion_etl.store.db import (
    MIGRATIONS_DIR,
    check_schema,
    create_db_engine,
    current_revision,
    downgrade,
    head_revision,
    migration_connection,
    read_only_engine,
    upgrade,
)
from fluxion_etl.store.schema import audit_log, metadata

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SESSION_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "plan_cache_mode",
)


def test_live_schema_matches_the_declared_metadata(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(engine: Engine) -> None:
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())


def test_schema_check_refuses_an_empty_database_and_accepts_an_upgraded_one(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        with pytest.raises(SchemaNotReadyError, match="fluxion-etl db upgrade"):
            check_schema(engine)
        upgrade(engine)
        upgrade(engine)  # a second upgrade is a no-op
        check_schema(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_concurrent_upgrades_from_separate_processes_all_succeed(db_url: str) -> None:
    script = (
        "import sys\n"
        "from fluxion_etl.store.db import create_db_engine, upgrade\n"
        "engine = create_db_engine(sys.argv[1])\n"
        "upgrade(engine)\n"
        "engine.dispose()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    engine = create_db_engine(db_url)
    try:
        check_schema(engine)
    finally:
        engine.dispose()


def test_sqlite_migrations_run_with_foreign_keys_off_and_restore_them(sqlite_url: str) -> None:
    """Batch migrations recreate tables; a DROP with foreign keys on would cascade."""
    engine = create_db_engine(sqlite_url, pool_size=1)
    try:
        with migration_connection(engine) as conn:
            during = conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
        with engine.connect() as conn:  # the same pooled connection (pool_size=1)
            after = conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
    finally:
        engine.dispose()
    assert (during, after) == (0, 1)


def test_the_alembic_command_line_uses_the_shipped_ini(sqlite_url: str) -> None:
    ini = MIGRATIONS_DIR / "alembic.ini"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(ini),
            "-x",
            f"url={sqlite_url}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    engine = create_db_engine(sqlite_url)
    try:
        check_schema(engine)
    finally:
        engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    package_dir = fluxion_etl.__file__.rsplit("/", 1)[0]
    assert str(MIGRATIONS_DIR).startswith(package_dir)
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert any((MIGRATIONS_DIR / "versions").glob("0001_*.py"))


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "synchronous": 1,
    }


def test_sqlite_writers_queue_instead_of_failing_with_database_locked(sqlite_url: str) -> None:
    """Read-then-write transactions in parallel threads: each must see the previous one's row."""
    engine = create_db_engine(sqlite_url, pool_size=8)
    upgrade(engine)

    def read_then_write(n: int) -> int:
        with engine.begin() as conn:
            seen = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
            time.sleep(0.02)  # widen the window in which a deferred transaction would collide
            conn.execute(insert(audit_log).values(at=NOW, actor=f"t{n}", action="test"))
            return int(seen)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = list(pool.map(read_then_write, range(16)))
    finally:
        engine.dispose()
    assert sorted(seen) == list(range(16))


def test_sqlite_read_only_transactions_do_not_wait_for_a_writer(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    upgrade(engine)
    writer_holds_lock, reader_done = threading.Event(), threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.execute(insert(audit_log).values(at=NOW, actor="w", action="test"))
            writer_holds_lock.set()
            reader_done.wait(timeout=10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        writer_holds_lock.wait(timeout=10)
        started = time.monotonic()
        with read_only_engine(engine).begin() as conn:
            count = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        elapsed = time.monotonic() - started
    finally:
        reader_done.set()
        thread.join()
        engine.dispose()
    assert count == 0  # the writer had not committed
    assert elapsed < 2


def test_postgres_engine_has_a_bounded_pool_timeouts_and_custom_plans(pg_url: str) -> None:
    engine = create_db_engine(pg_url, pool_size=3)
    try:
        with engine.connect() as conn:
            settings = {
                name: conn.execute(text(f"SHOW {name}")).scalar_one() for name in SESSION_SETTINGS
            }
            app = conn.execute(text("SHOW application_name")).scalar_one()
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    assert settings == {
        "statement_timeout": "10min",
        "lock_timeout": "1min",
        "idle_in_transaction_session_timeout": "10min",
        "plan_cache_mode": "force_custom_plan",
    }
    assert app == "fluxion-etl"


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        create_db_engine("mysql://localhost/x")


def _cli() -> typer.Typer:
    app = typer.Typer()
    db_cli.register(app)

    @app.command()
    def noop() -> None:
        """Keeps ``db`` a sub-command group."""

    return app


def test_cli_db_upgrade_then_current(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUXION_DATABASE_URL", db_url)
    runner = CliRunner()

    before = runner.invoke(_cli(), ["db", "current"])
    assert before.exit_code == 0, before.output
    assert "needs `fluxion-etl db upgrade`" in before.output

    upgraded = runner.invoke(_cli(), ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema upgraded from empty to {head_revision()}" in upgraded.output

    again = runner.invoke(_cli(), ["db", "upgrade"])
    assert f"schema already at {head_revision()}" in again.output

    after = runner.invoke(_cli(), ["db", "current"])
    assert "up to date" in after.output


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pg_url: str, pid: int) -> None:
    admin = create_db_engine(pg_url)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    finally:
        admin.dispose()
    time.sleep(0.2)  # the backend exits


def test_postgres_connection_idle_past_the_threshold_is_pinged_and_replaced_if_gone(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted server or an idle timeout closes pooled connections: one that sat in the pool
    longer than ``PING_AFTER_IDLE_S`` is checked before it is handed out."""
    engine = create_db_engine(pg_url, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)

        second = _backend_pid(engine)  # would raise without the ping

        assert second != first
    finally:
        engine.dispose()


def test_postgres_connection_back_a_moment_ago_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price of skipping the round trip: a connection closed within the threshold fails its
    first statement; SQLAlchemy then drops it, and the next checkout opens a new one."""
    engine = create_db_engine(pg_url, pool_size=1)
    try:
        first = _backend_pid(engine)
        _terminate(pg_url, first)
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)

        with pytest.raises(OperationalError):
            _backend_pid(engine)
        second = _backend_pid(engine)

        assert second != first
    finally:
        engine.dispose()
