"""The one place that knows SQLite and PostgreSQL spell ``INSERT … ON CONFLICT`` through different
SQLAlchemy constructs (same SQL, same semantics, and both support ``RETURNING``)."""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

UpsertInsert = postgresql.Insert | sqlite.Insert


def insert_for(conn: Connection, table: Table) -> UpsertInsert:
    """An ``insert(table)`` offering ``on_conflict_do_nothing``/``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}")
