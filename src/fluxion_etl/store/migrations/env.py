"""Alembic environment: used by ``fluxion_etl.store.db.upgrade`` and by the ``alembic`` command.

Programmatic runs pass an open connection (already inside the caller's transaction and migration
lock) in ``config.attributes["connection"]``. The ``alembic -c .../alembic.ini`` command line builds
its own engine from ``-x url=...`` or ``FLUXION_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fluxion_etl.settings import load_settings
from fluxion_etl.store.db import create_db_engine, migration_connection
from fluxion_etl.store.schema import metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # Our SQLite engine emits BEGIN itself, so DDL there is transactional too.
        transactional_ddl=True,
        compare_type=True,
    )


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    return load_settings().database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = create_db_engine(_url(), pool_size=1)
    try:
        with migration_connection(engine) as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
