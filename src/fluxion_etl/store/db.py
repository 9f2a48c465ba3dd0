"""Engines for both dialects and the schema lifecycle (Alembic, shipped inside the package).

SQLite allows one writer at a time. Python's sqlite3 driver would start a transaction lazily (a
*deferred* ``BEGIN`` before the first write), so two writer threads can both hold a read snapshot
and one then fails with "database is locked" when it upgrades to a write lock. We take transaction
control from the driver and open every transaction with ``BEGIN IMMEDIATE`` instead: writers queue
on the busy timeout rather than fail. Read-only callers (the dashboard) can use
``read_only_engine(engine)`` to start with a plain deferred ``BEGIN`` and so never wait for a load.

PostgreSQL runs through psycopg 3 with a bounded pool and server-side timeouts, so a stuck
statement or an abandoned transaction cannot pin connections forever. A connection that sat in
the pool for more than ``PING_AFTER_IDLE_S`` is pinged before it is handed out (a restarted
server or an idle timeout closed it meanwhile); one back within that time is not: a cycle takes
and returns connections thousands of times, a round trip each. A connection that fails anyway is
invalidated by SQLAlchemy when its error says so, and the next checkout opens a new one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from fluxion_etl.errors import SchemaNotReadyError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10
# Generous for a 10x-chain bulk load, short enough that a hung statement frees its connection.
PG_STATEMENT_TIMEOUT_MS = 10 * 60 * 1000
PG_LOCK_TIMEOUT_MS = 60 * 1000
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 10 * 60 * 1000
# Arbitrary constant key ("fluxmigr") for the advisory lock that serialises concurrent upgrades.
MIGRATION_LOCK_KEY = 0x666C75786D696772

PING_AFTER_IDLE_S = 2.0
_RETURNED_AT = "fluxion_returned_at"  # in a pool entry's ``info``: when it was last checked in

# Execution option: a transaction that only reads (SQLite: plain deferred BEGIN).
READ_ONLY_OPTION = "fluxion_read_only"


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``sqlite:///...`` or ``postgresql+psycopg://...``, configured for the ETL."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, pool_size=pool_size)
    if backend == "postgresql":
        return _postgres_engine(url, pool_size=pool_size)
    shown = make_url(url).render_as_string(hide_password=True)
    raise ValueError(f"unsupported database URL {shown!r}: use sqlite:/// or postgresql+psycopg://")


def read_only_engine(engine: Engine) -> Engine:
    """The same pool for transactions that only read: on SQLite they never queue behind a writer."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def _sqlite_engine(url: str, *, pool_size: int) -> Engine:
    in_memory = make_url(url).database in (None, "", ":memory:")
    pool_args: dict[str, Any] = {}
    if not in_memory:
        pool_args = {"pool_size": pool_size, "max_overflow": pool_size}
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **pool_args)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection settings; the driver stops issuing BEGIN itself (see ``_sqlite_on_begin``)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA temp_store=MEMORY")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """Take the write lock up front so concurrent writers wait on the busy timeout, not fail."""
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _postgres_engine(url: str, *, pool_size: int) -> Engine:
    options = (
        f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} "
        f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_TIMEOUT_MS} "
        # psycopg prepares a statement run 5 times; PostgreSQL then may keep one generic plan,
        # made while a table was small and blind to which location a query names. Data here is
        # skewed by location and grows fast, so every execution is planned for its values.
        "-c plan_cache_mode=force_custom_plan"
    )
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,  # bounded: at most 2 x pool_size connections per process
        pool_timeout=30,
        pool_recycle=30 * 60,
        connect_args={
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "application_name": "fluxion-etl",
            "options": options,
        },
    )
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections that were idle for more than ``PING_AFTER_IDLE_S``."""

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def taken(dbapi_connection: Any, entry: ConnectionPoolEntry, _: PoolProxiedConnection) -> None:
        returned_at = entry.info.pop(_RETURNED_AT, None)
        if returned_at is None or time.monotonic() - returned_at <= PING_AFTER_IDLE_S:
            return  # just opened, or back a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection is gone")


# --- schema lifecycle -----------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the migrations shipped in the package (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction; safe when several processes race."""
    with migration_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the schema back to ``revision`` (``"base"`` drops every table): tests, rollbacks."""
    with migration_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that holds the migration lock; committed on exit.

    PostgreSQL: a transaction-scoped advisory lock makes a concurrent upgrader wait, then find the
    schema current. SQLite: ``BEGIN IMMEDIATE`` serialises them already. SQLite batch migrations
    recreate tables, and with foreign keys on, dropping the old ``runs`` would cascade into
    ``run_items``; so foreign keys are off for the migration (the pragma only applies outside a
    transaction), checked before commit, and back on afterwards.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _sqlite_pragma_outside_transaction(conn, "foreign_keys=OFF")
        try:
            with conn.begin():
                lock_for_migration(conn)
                yield conn
                if sqlite:
                    _check_foreign_keys(conn)
        finally:
            if sqlite:
                _sqlite_pragma_outside_transaction(conn, "foreign_keys=ON")


def _sqlite_pragma_outside_transaction(conn: Connection, pragma: str) -> None:
    conn.connection.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration left rows with dangling foreign keys: {broken[:5]}")


def lock_for_migration(conn: Connection) -> None:
    """Serialise concurrent upgrades (PostgreSQL); the lock ends with the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # DDL can legitimately wait for and take longer than the ETL's timeouts; scoped to this tx.
        conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it has no schema yet."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def revisions() -> list[str]:
    """Every revision shipped, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _require_sqlite_file(engine: Engine) -> None:
    database = engine.url.database
    if database in (None, "", ":memory:"):
        raise SchemaNotReadyError(
            None,
            head_revision(),
            why="an in-memory SQLite database is empty in every process: give a file, e.g. "
            "FLUXION_DATABASE_URL=sqlite:///fluxion.db",
        )
    path = Path(database).resolve()
    if not path.is_file():
        raise SchemaNotReadyError(
            None,
            head_revision(),
            why=f"there is no database at {path}: check FLUXION_DATABASE_URL, or create it "
            "there with `fluxion-etl db upgrade`",
        )


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is missing or not the revision this code was built for.

    A SQLite file that does not exist is refused before connecting (which would create it): a
    mistyped path must not leave an empty database behind, nor ask to upgrade it."""
    if engine.dialect.name == "sqlite":
        _require_sqlite_file(engine)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReadyError(current, head)
