"""What each warehouse's stored inventory was last loaded from: a digest of the catalogue's
article list (``klk.decode.catalogue_digest``) and how many articles it held.

The inventory loader writes the digest in the transaction of a load that left the warehouse's
stored articles exactly as the catalogue says, and deletes it in any other load (one held back
by the mass-disappearance guard, or a caller that gave no digest), so a digest on file always
describes what is stored. A catalogue whose articles hash the same is then already stored as it
is: the engine skips decoding and merging it (at night most stores' catalogues do not change).

A digest counts only once the run that wrote it has finished ``succeeded`` or ``partial``: the
run's products upsert comes after its locations' loads, and a run that died in between must not
leave the next one skipping the products it never wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from fluxion_etl.domain.states import RunStatus
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.schema import catalogue_digests, inventory_current, runs

FINISHED_WHOLE = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)


@dataclass(frozen=True, slots=True)
class CatalogueDigest:
    digest: str
    articles: int  # distinct articles stored from it
    fetched: int  # rows in the payload, repeated skus included


def _still_stored() -> ColumnElement[bool]:
    """As many articles stored for the warehouse as the digest's load left: rows added or
    removed by hand (say, to force a reload) void the digest."""
    c, stored = catalogue_digests.c, inventory_current.c
    count = (
        select(func.count())
        .where(stored.location_id == c.location_id, stored.warehouse_code == c.warehouse_code)
        .scalar_subquery()
    )
    return c.articles == count


def loaded_digests(conn: Connection, location_id: str) -> dict[str, CatalogueDigest]:
    """The location's digests by warehouse code: those of runs that finished whole, whose
    warehouse still holds as many articles as they left."""
    c = catalogue_digests.c
    query = (
        select(c.warehouse_code, c.digest, c.articles, c.fetched)
        .join(runs, runs.c.id == c.run_id)
        .where(c.location_id == location_id, runs.c.status.in_(FINISHED_WHOLE), _still_stored())
    )
    return {
        row.warehouse_code: CatalogueDigest(row.digest, row.articles, row.fetched)
        for row in conn.execute(query)
    }


def confirm(
    conn: Connection, *, location_id: str, warehouse_code: str, digest: str, run_id: int
) -> bool:
    """In the load's transaction: is ``digest`` still the one on file, with as many articles
    stored? Marks it seen by ``run_id`` (and locks the row until the commit). False when a load
    replaced or removed it, or rows were added or removed, since it was read."""
    c = catalogue_digests.c
    seen = (
        update(catalogue_digests)
        .where(
            c.location_id == location_id,
            c.warehouse_code == warehouse_code,
            c.digest == digest,
            _still_stored(),
        )
        .values(run_id=run_id)
    )
    return conn.execute(seen).rowcount == 1


def remember(
    conn: Connection,
    *,
    location_id: str,
    warehouse_code: str,
    digest: CatalogueDigest,
    run_id: int,
    now: datetime,
) -> None:
    values = {
        "digest": digest.digest,
        "articles": digest.articles,
        "fetched": digest.fetched,
        "run_id": run_id,
        "loaded_at": now,
    }
    stmt = insert_for(conn, catalogue_digests).values(
        location_id=location_id, warehouse_code=warehouse_code, **values
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[catalogue_digests.c.location_id, catalogue_digests.c.warehouse_code],
            set_={name: stmt.excluded[name] for name in values},
        )
    )


def forget(conn: Connection, *, location_id: str, warehouse_code: str) -> None:
    c = catalogue_digests.c
    conn.execute(
        delete(catalogue_digests).where(
            c.location_id == location_id, c.warehouse_code == warehouse_code
        )
    )
