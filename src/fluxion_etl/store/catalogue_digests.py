"""What each warehouse's stored inventory was last loaded from: a digest of the catalogue's
article list (``klk.decode.catalogue_digest``) and how many articles it held.

The inventory loader writes the digest in the transaction of a load that left the warehouse's
stored articles exactly as the catalogue says, and deletes it in any other load (one held back
by the mass-disappearance guard, or a caller that gave no digest), so a digest on file describes
what is stored. A catalogue whose articles hash the same is then already stored as it is: the
engine skips decoding and merging it (at night most stores' catalogues do not change).

A digest counts only while nothing says otherwise:
* the run that wrote it finished ``succeeded`` or ``partial``: the run's products upsert comes
  after its locations' loads, and a run that died in between must not leave the next one
  skipping the products it never wrote;
* it was written by this code (``CODE_VERSION``, a hash of the modules that decide what a
  catalogue's bytes store): a release that decodes or stores differently loads everything once;
* the warehouse holds as many articles as that load left, none written after it (every load
  stamps the rows it writes with its time): rows changed by another writer, by hand or by an
  older release during a deploy, void it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import psycopg
from sqlalchemy import ColumnElement, Connection, and_, delete, func, select, true, update
from sqlalchemy.exc import DBAPIError

from fluxion_etl.domain.records import KnownArticles
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.store.bulk import is_postgres
from fluxion_etl.store.code_version import DECODING_MODULES, source_version
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.schema import catalogue_digests, inventory_current, runs

FINISHED_WHOLE = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)


@dataclass(frozen=True, slots=True)
class CatalogueDigest:
    digest: str
    articles: int  # distinct articles stored from it
    fetched: int  # rows in the payload, repeated skus included
    run_id: int | None = None  # the run whose load wrote it (as read back)


# The modules whose code decides what a catalogue's bytes end up as in the database.
_DECIDING_MODULES = (
    *DECODING_MODULES,
    "fluxion_etl.store.catalogue_digests",
    "fluxion_etl.store.inventory_loader",
)
_CODE_VERSION = source_version(_DECIDING_MODULES)


def code_version() -> str:
    """A hash of the source of the modules that decide what a catalogue stores (read when this
    module is imported: the code this process runs)."""
    return _CODE_VERSION


def _still_stored() -> ColumnElement[bool]:
    """This code's digest, and the warehouse holds as many articles as its load left, none
    written after it: one pass over the warehouse's rows (the count and the latest write)."""
    c, stored = catalogue_digests.c, inventory_current.c
    fits = (
        select(
            and_(
                func.count() == c.articles,
                func.coalesce(func.max(stored.updated_at) <= c.loaded_at, true()),
            )
        )
        .where(stored.location_id == c.location_id, stored.warehouse_code == c.warehouse_code)
        .scalar_subquery()
    )
    return and_(c.code_version == code_version(), fits)


def loaded_digests(conn: Connection, location_id: str) -> dict[str, CatalogueDigest]:
    """The location's digests by warehouse code that count (see the module's docstring)."""
    c = catalogue_digests.c
    query = (
        select(c.warehouse_code, c.digest, c.articles, c.fetched, c.run_id)
        .join(runs, runs.c.id == c.run_id)
        .where(c.location_id == location_id, runs.c.status.in_(FINISHED_WHOLE), _still_stored())
    )
    return {
        row.warehouse_code: CatalogueDigest(row.digest, row.articles, row.fetched, row.run_id)
        for row in conn.execute(query)
    }


def known_articles(conn: Connection, *, location_id: str, warehouse_code: str) -> KnownArticles:
    """What the warehouse holds, for decoding only the changed articles of its next catalogue:
    trusted as far as its digest from ``loaded_digests`` is (the same writers stamp both)."""
    skus, fingerprints = _stored_articles(conn, location_id, warehouse_code)
    with_none = dict(zip(fingerprints, skus, strict=True))
    with_none.pop(None, None)
    by_fingerprint = cast(dict[int, str], with_none)
    if len(by_fingerprint) < len(fingerprints) - fingerprints.count(None):
        # Two rows with one fingerprint (a hand edit, or 2⁻⁶⁴ bad luck): neither says which
        # article it holds, so their articles are decoded.
        seen = Counter(fingerprints)
        by_fingerprint = {f: sku for f, sku in by_fingerprint.items() if seen[f] == 1}
    return KnownArticles(by_fingerprint=by_fingerprint, skus=frozenset(skus))


def _stored_articles(
    conn: Connection, location_id: str, warehouse_code: str
) -> tuple[list[str], list[int | None]]:
    """(skus, fingerprints) of the warehouse's rows, in the same order. On PostgreSQL as two
    arrays in one binary row: 15,000 rows come back in about half the time, and a changed
    catalogue of every store is read each cycle while they sell."""
    if not is_postgres(conn):
        stored = inventory_current.c
        query = select(stored.sku, stored.fingerprint).where(
            stored.location_id == location_id, stored.warehouse_code == warehouse_code
        )
        rows = conn.execute(query).all()
        return [sku for sku, _ in rows], [fingerprint for _, fingerprint in rows]
    sql = (
        "SELECT array_agg(sku), array_agg(fingerprint) FROM inventory_current "
        "WHERE location_id = %s AND warehouse_code = %s"
    )
    driver = conn.connection.driver_connection
    try:
        with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            skus, fingerprints = cursor.execute(sql, (location_id, warehouse_code)).fetchone()
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
    return skus or [], fingerprints or []


def confirm(
    conn: Connection, *, location_id: str, warehouse_code: str, digest: CatalogueDigest
) -> bool:
    """In the load's transaction: does ``digest`` (as ``loaded_digests`` read it) still count?
    Locks its row until the commit. False when a load replaced or removed it, or rows were
    written, since it was read: even a load of the same catalogue in between, which may have
    left other articles in the meantime (its run differs). The row keeps the run that loaded
    it: that run wrote the products behind it."""
    c = catalogue_digests.c
    lock = (
        update(catalogue_digests)
        .where(
            c.location_id == location_id,
            c.warehouse_code == warehouse_code,
            c.digest == digest.digest,
            c.run_id == digest.run_id,
            _still_stored(),
        )
        .values(digest=c.digest)
    )
    return conn.execute(lock).rowcount == 1


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
        "code_version": code_version(),
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
