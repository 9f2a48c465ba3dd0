"""Named locks with expiry, for work that one of several service processes must do alone.

Several ``serve`` processes may share one database; alert evaluation (and the messages it sends)
must happen in only one of them, or every alert would go out once per process. The lock is a row
keyed by name, taken with one ``INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <= now OR owner =
me`` (atomic, like the run leases of ``store.leases``): the holder renews it on every turn; when
its process dies the lock expires and another process takes over.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, delete, or_

from fluxion_etl.store.dialect import UpsertInsert, insert_for
from fluxion_etl.store.schema import service_locks


def try_lock(conn: Connection, name: str, *, owner: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew lock ``name`` for ``owner`` until ``now + ttl``; False while another live
    owner holds it."""
    values = {"owner": owner, "acquired_at": now, "expires_at": now + ttl}
    stmt = insert_for(conn, service_locks).values(name=name, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[service_locks.c.name],
        set_={
            "owner": stmt.excluded.owner,
            "expires_at": stmt.excluded.expires_at,
            # a renewal keeps when the owner first took it
            "acquired_at": _acquired_at(stmt, owner),
        },
        where=or_(service_locks.c.expires_at <= now, service_locks.c.owner == owner),
    ).returning(service_locks.c.name)
    return conn.execute(upsert).first() is not None


def _acquired_at(stmt: UpsertInsert, owner: str) -> Any:
    return case(
        (service_locks.c.owner == owner, service_locks.c.acquired_at),
        else_=stmt.excluded.acquired_at,
    )


def unlock(conn: Connection, name: str, *, owner: str) -> bool:
    """Give the lock up (on shutdown), so another process need not wait for it to expire."""
    result = conn.execute(
        delete(service_locks).where(service_locks.c.name == name, service_locks.c.owner == owner)
    )
    return result.rowcount == 1
