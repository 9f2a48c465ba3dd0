"""Inventory: current stock per (location, warehouse, sku), history only on change (SPEC §4.10).

A catalogue is loaded in two steps inside the caller's transaction, so that the runner can hold a
mass disappearance back (SPEC §4.9) without a second pass over KLK:

    staged = stage_inventory(conn, location_id=..., warehouse_code=..., items=..., now=...)
    apply = not is_mass_deletion(staged.disappearing, staged.current_total, threshold)
    result = apply_inventory(conn, staged, apply_disappearances=apply, digest=...)

The first step already writes what appeared or changed (and its history): the hold concerns only
what disappears, and counting the disappearing articles in the statement that merges the others
saves a pass over the stored catalogue and a round trip. The second step removes what disappeared,
or keeps it when the caller holds it back.

History rows: ``appeared`` (a new sku), ``changed`` (the stock differs: old and new stock),
``disappeared`` (stored, but missing from the catalogue; only when disappearances are applied).
A price- or tax-only change updates the current row but writes no history: the history answers
"how did stock move", and prices change across the whole catalogue at once with the exchange rate,
which would turn the history back into a full copy of every snapshot.

On PostgreSQL the first load of a warehouse (nothing stored for it yet, seen in the same
transaction) skips the stage and the merge: the catalogue is copied straight into
``inventory_current`` and its ``appeared`` history read back from there, the same rows the merge
would write. Staging, the full join and the conflict checks were a quarter of that load.

Nothing is written for an identical catalogue. Each step runs a constant number of statements.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Column, Connection, TextClause, bindparam, text

from fluxion_etl.domain.records import CatalogueItem
from fluxion_etl.store import catalogue_digests
from fluxion_etl.store.bulk import (
    column_list,
    copy_records,
    differs,
    is_postgres,
    stage,
)
from fluxion_etl.store.catalogue_digests import CatalogueDigest
from fluxion_etl.store.schema import inventory_current, products
from fluxion_etl.store.types import UtcDateTime

INVENTORY_STAGE = "fluxion_stage_inventory"
PRODUCTS_STAGE = "fluxion_stage_products"
STOCK_FIELDS = ("sku", "stock", "price_usd", "tax_rate")
STOCK_VALUES = ("stock", "price_usd", "tax_rate")
STAGED_FIELDS = (*STOCK_FIELDS, "fingerprint")
CURRENT_FIELDS = ("location_id", "warehouse_code", *STAGED_FIELDS, "updated_at", "run_id")
PRODUCT_FIELDS = (
    "sku",
    "barcode",
    "name",
    "category_code",
    "subcategory_code",
    "category_name",
    "subcategory_name",
    "brand",
    "tax_rate",
)
PRODUCT_VALUES = PRODUCT_FIELDS[1:]

# Bound values used both as a result column and in a comparison need one type on PostgreSQL.
LOC = "CAST(:location_id AS VARCHAR)"
WH = "CAST(:warehouse_code AS VARCHAR)"
RUN = "CAST(:run_id AS BIGINT)"

# Which stage currently fills the inventory staging table of a connection (see apply_inventory).
_STAGE_OWNER = "fluxion_inventory_stage"
_stage_tokens = itertools.count(1)


@dataclass(frozen=True, slots=True)
class InventoryStage:
    """A catalogue of one warehouse, written but for what disappeared, and what that would be."""

    location_id: str
    warehouse_code: str
    run_id: int | None
    now: datetime
    staged: int  # distinct skus in the catalogue (kept ones included)
    current_total: int  # skus stored for this warehouse before the load
    disappearing: int  # stored skus the catalogue no longer lists
    inserted: int
    updated: int
    history_rows: int  # of what appeared or changed
    token: int
    gone: tuple[str, ...] | None = None  # the disappearing skus, when the caller named them
    # A digest of the warehouse may be on file (apply_inventory deletes it): False only when
    # this transaction has seen none.
    digest_on_file: bool = True


@dataclass(frozen=True, slots=True)
class InventoryResult:
    inserted: int
    updated: int
    unchanged: int
    disappeared: int  # removed, or (when not applied) that would have been
    history_rows: int


def load_inventory(
    conn: Connection,
    *,
    location_id: str,
    warehouse_code: str,
    items: Sequence[CatalogueItem],
    run_id: int | None,
    now: datetime,
    apply_disappearances: bool = True,
) -> InventoryResult:
    """Stage and apply in one call, for callers that need no mass-disappearance guard."""
    staged = stage_inventory(
        conn,
        location_id=location_id,
        warehouse_code=warehouse_code,
        items=items,
        run_id=run_id,
        now=now,
    )
    return apply_inventory(conn, staged, apply_disappearances=apply_disappearances)


def stage_inventory(
    conn: Connection,
    *,
    location_id: str,
    warehouse_code: str,
    items: Sequence[CatalogueItem],
    run_id: int | None,
    now: datetime,
    copy_first_load: bool = True,
    kept: int = 0,
    gone: Sequence[str] | None = None,
) -> InventoryStage:
    """Stage the whole catalogue of one warehouse (duplicate skus: the last wins), write what
    appeared or changed with its history, and count what would disappear. Finish with
    ``apply_inventory`` in the same transaction, before staging another catalogue on this
    connection.

    Or only part of it: ``items`` the new and changed articles, ``kept`` how many more are stored
    as they are (the caller knows them unchanged), ``gone`` the stored skus the catalogue no
    longer lists (``klk.decode``'s ``Catalogue.kept``/``gone``). The caller has read them in a
    state of the warehouse it confirms in this transaction.

    ``copy_first_load=False`` sends a first load on PostgreSQL through the stage and merge too
    (the tests compare the two ways).
    """
    unique = list({item.sku: item for item in items}.values())
    params = {
        "location_id": location_id,
        "warehouse_code": warehouse_code,
        "run_id": run_id,
        "now": now,
    }
    named = None if gone is None else tuple(gone)
    digest_on_file = True
    if is_postgres(conn):
        counts, digest_on_file = _write_postgres(
            conn, unique, params, copy_first_load=copy_first_load, gone=named
        )
    else:
        # SQLite looks staged skus up by index.
        stage(conn, INVENTORY_STAGE, _staged_columns(), unique, key=("sku",))
        counts = _merge_changes_sqlite(conn, params, gone=named)
    inserted, updated, disappearing, history = counts
    token = next(_stage_tokens)
    conn.info[_STAGE_OWNER] = token
    return InventoryStage(
        location_id=location_id,
        warehouse_code=warehouse_code,
        run_id=run_id,
        now=now,
        staged=len(unique) + kept,
        # Every stored sku is either in the catalogue (all but the inserted) or not.
        current_total=len(unique) + kept - inserted + disappearing,
        disappearing=disappearing,
        inserted=inserted,
        updated=updated,
        history_rows=history,
        token=token,
        gone=named,
        digest_on_file=digest_on_file,
    )


def apply_inventory(
    conn: Connection,
    staged: InventoryStage,
    *,
    apply_disappearances: bool = True,
    digest: CatalogueDigest | None = None,
) -> InventoryResult:
    """Remove the stored articles missing from the staged catalogue, with their history.

    When ``apply_disappearances`` is false they are kept (and only counted): the caller is holding
    a mass disappearance back.

    ``digest`` describes the catalogue staged (``store.catalogue_digests``): it is kept when the
    warehouse's stored articles now equal the catalogue, and any other load of the warehouse
    deletes the one on file, so a digest on file always describes what is stored.
    """
    if conn.info.get(_STAGE_OWNER) != staged.token:
        raise RuntimeError(
            f"the staged catalogue of {staged.location_id}/{staged.warehouse_code} was replaced "
            "by a later stage_inventory on this connection; stage and apply one at a time"
        )
    history, disappeared = staged.history_rows, staged.disappearing
    if apply_disappearances and staged.disappearing:
        params = {
            "location_id": staged.location_id,
            "warehouse_code": staged.warehouse_code,
            "run_id": staged.run_id,
            "now": staged.now,
        }
        if staged.gone is not None:
            disappeared = _remove_named(conn, staged.gone, params)
            history += disappeared
        elif is_postgres(conn):
            # One statement removes the rows and writes their history: a row each.
            disappeared = conn.execute(_remove_disappeared_postgres(), params).rowcount
            history += disappeared
        else:
            history += conn.execute(_history_of_disappeared(), params).rowcount
            disappeared = conn.execute(_delete_disappeared(), params).rowcount
    where = {"location_id": staged.location_id, "warehouse_code": staged.warehouse_code}
    as_catalogue = apply_disappearances or not staged.disappearing
    if digest is not None and staged.run_id is not None and as_catalogue:
        catalogue_digests.remember(
            conn, **where, digest=digest, run_id=staged.run_id, now=staged.now
        )
    elif staged.digest_on_file:
        catalogue_digests.forget(conn, **where)
    return InventoryResult(
        inserted=staged.inserted,
        updated=staged.updated,
        unchanged=staged.staged - staged.inserted - staged.updated,
        disappeared=disappeared,
        history_rows=history,
    )


def _merge_changes_sqlite(
    conn: Connection, params: dict[str, Any], *, gone: tuple[str, ...] | None
) -> tuple[int, int, int, int]:
    """(inserted, updated, disappearing, history rows): four statements, the history read
    before the upsert, while the old stock is still there."""
    if gone is None:
        disappearing = int(conn.execute(_count_disappearing(), params).scalar_one() or 0)
    else:
        disappearing = len(gone)
    inserted, updated, written = conn.execute(_count_changes(conn), params).one()
    inserted, updated = int(inserted or 0), int(updated or 0)
    history = 0
    if written:
        history = conn.execute(_history_of_changes(conn), params).rowcount
        conn.execute(_upsert_changes(conn), params)
    return inserted, updated, disappearing, history


def _count_disappearing() -> TextClause:
    return text(
        f"""
        SELECT sum(CASE WHEN s.sku IS NULL THEN 1 ELSE 0 END)
        FROM inventory_current AS c LEFT JOIN {INVENTORY_STAGE} AS s ON s.sku = c.sku
        WHERE c.location_id = :location_id AND c.warehouse_code = :warehouse_code
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def _changed_rows(conn: Connection) -> str:
    """Staged rows that are new or differ from what is stored (``c.sku`` NULL = new), or that
    only come from other bytes (the fingerprint alone is rewritten)."""
    return f"""
        FROM {INVENTORY_STAGE} AS s
        LEFT JOIN inventory_current AS c
          ON c.location_id = {LOC} AND c.warehouse_code = {WH} AND c.sku = s.sku
        WHERE (c.sku IS NULL OR {differs(conn, "c", "s", (*STOCK_VALUES, "fingerprint"))})
    """


def _typed(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("now", type_=UtcDateTime()))


def _count_changes(conn: Connection) -> TextClause:
    """(inserted, updated, rows to write): an update changes stock, price or tax."""
    values_differ = differs(conn, "c", "s", STOCK_VALUES)
    return text(
        "SELECT sum(CASE WHEN c.sku IS NULL THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN c.sku IS NOT NULL AND {values_differ} THEN 1 ELSE 0 END), "
        "count(*) " + _changed_rows(conn)
    )


def _history_of_changes(conn: Connection) -> TextClause:
    """Before the upsert, while the old stock is still there to read."""
    stock_differs = differs(conn, "c", "s", ["stock"])
    return _typed(
        f"""
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
             changed_at, run_id)
        SELECT {LOC}, {WH}, s.sku,
               CASE WHEN c.sku IS NULL THEN 'appeared' ELSE 'changed' END,
               c.stock, s.stock, s.price_usd, :now, {RUN}
        {_changed_rows(conn)} AND (c.sku IS NULL OR {stock_differs})
        """
    )


def _upsert_changes(conn: Connection) -> TextClause:
    return _typed(
        f"""
        INSERT INTO inventory_current ({column_list(CURRENT_FIELDS)})
        SELECT {LOC}, {WH}, {column_list(STAGED_FIELDS, "s")}, :now, {RUN}
        {_changed_rows(conn)}
        ON CONFLICT (location_id, warehouse_code, sku) DO UPDATE SET {_assignments(conn)}
        """
    )


def _assignments(conn: Connection) -> str:
    """The upsert's ``SET``: a row that only comes from other bytes keeps the time and run that
    last changed its values."""
    values_differ = differs(conn, "inventory_current", "excluded", STOCK_VALUES)
    stamps = (
        f"{n} = CASE WHEN {values_differ} THEN excluded.{n} ELSE inventory_current.{n} END"
        for n in ("updated_at", "run_id")
    )
    # The stamps are computed before the values change: every expression of a SET sees the row
    # as it was.
    values = (f"{n} = excluded.{n}" for n in (*STOCK_VALUES, "fingerprint"))
    return ", ".join((*stamps, *values))


def _staged_columns() -> list[Column[Any]]:
    return [inventory_current.c[name] for name in STAGED_FIELDS]


def _write_postgres(
    conn: Connection,
    unique: Sequence[CatalogueItem],
    params: dict[str, Any],
    *,
    copy_first_load: bool,
    gone: tuple[str, ...] | None,
) -> tuple[tuple[int, int, int, int], bool]:
    """(inserted, updated, disappearing, history rows), and whether a digest of the warehouse
    is on file. One question first, in the caller's transaction: is anything stored for this
    warehouse, is a digest on file, and is the staging table there already? Nothing stored: the
    first load, copied straight in. Otherwise stage and merge; the question replaces the stage's
    ``CREATE … IF NOT EXISTS`` and spares ``apply_inventory`` deleting a digest that is not
    there, so a reload runs as many statements as the baseline."""
    stored, digest_on_file, stage_exists = conn.execute(_survey_postgres(), params).one()
    if not stored and copy_first_load and not gone:
        first = len(unique), 0, 0, _copy_first_catalogue(conn, unique, params)
        return first, bool(digest_on_file)
    # PostgreSQL hash-joins staged and stored skus; an index would only slow the COPY (the skus
    # are already unique).
    stage(
        conn, INVENTORY_STAGE, _staged_columns(), unique, exists=bool(stage_exists), by_columns=True
    )
    inserted, updated, disappearing, history = _merge_changes_postgres(
        conn, params, whole=gone is None
    )
    counts = inserted, updated, disappearing if gone is None else len(gone), history
    return counts, bool(digest_on_file)


def _survey_postgres() -> TextClause:
    return text(
        f"""
        SELECT EXISTS (
                   SELECT 1 FROM inventory_current
                   WHERE location_id = :location_id AND warehouse_code = :warehouse_code
               ),
               EXISTS (
                   SELECT 1 FROM catalogue_digests
                   WHERE location_id = :location_id AND warehouse_code = :warehouse_code
               ),
               to_regclass('pg_temp.{INVENTORY_STAGE}') IS NOT NULL
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def _copy_first_catalogue(
    conn: Connection, unique: Sequence[CatalogueItem], params: dict[str, Any]
) -> int:
    """Copy the catalogue of a warehouse with nothing stored straight into ``inventory_current``,
    then write every article's ``appeared`` history from the rows just written; returns the
    history rows. What the merge writes for such a warehouse, without staging, joining and
    checking conflicts.

    The caller has seen the warehouse empty in this transaction, and one run at a time writes a
    location (leases). Should another transaction write the warehouse all the same, the COPY
    fails on the primary key and the caller's transaction with it: nothing half-written.
    """
    if not unique:
        return 0
    now = UtcDateTime().process_bind_param(params["now"], conn.dialect)  # refuses naive times
    columns = [inventory_current.c[name] for name in CURRENT_FIELDS]
    copy_records(
        conn,
        "inventory_current",
        columns,
        unique,
        before=(params["location_id"], params["warehouse_code"]),
        after=(now.isoformat(), params["run_id"]),  # ISO 8601 with its offset: exact
        as_text=("updated_at",),
        by_columns=True,
    )
    return int(conn.execute(_history_of_first_catalogue(), params).rowcount)


def _history_of_first_catalogue() -> TextClause:
    # The copied rows carry the load's time and run already: changed_at and run_id come from them.
    return text(
        """
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
             changed_at, run_id)
        SELECT location_id, warehouse_code, sku, 'appeared', NULL, stock, price_usd,
               updated_at, run_id
        FROM inventory_current
        WHERE location_id = :location_id AND warehouse_code = :warehouse_code
        """
    )


def _merge_changes_postgres(
    conn: Connection, params: dict[str, Any], *, whole: bool
) -> tuple[int, int, int, int]:
    """(inserted, updated, disappearing, history rows) in one statement: one round trip and one
    pass over the staged and the stored catalogue, as the baseline's merge.

    The full join finds what appeared, changed and disappeared at once (``touched``); the first
    two feed the history and the upsert, the third is only counted. Every part of a statement
    sees the same snapshot, so the history reads the stock from before the upsert; ``upserted``
    runs although nothing reads it (PostgreSQL always completes a data-modifying ``WITH``).

    A staged part of a catalogue (not ``whole``) says nothing of what disappeared: its rows are
    looked up by key instead (a left join), and disappearing is 0 here.
    """
    stored = f"""(
                SELECT {column_list(STAGED_FIELDS)} FROM inventory_current
                WHERE location_id = {LOC} AND warehouse_code = {WH}
            ) AS c ON c.sku = s.sku"""  # noqa: S608 - identifiers are our own constants; values are bound
    if not whole:
        stored = f"""inventory_current AS c
              ON c.location_id = {LOC} AND c.warehouse_code = {WH} AND c.sku = s.sku"""
    join = "FULL JOIN" if whole else "LEFT JOIN"
    values_differ = differs(conn, "c", "s", STOCK_VALUES)
    sql = f"""
        WITH touched AS MATERIALIZED (
            SELECT {column_list(STAGED_FIELDS, "s")}, c.stock AS old_stock,
                   c.sku IS NULL AS appeared, c.sku IS NOT NULL AND s.sku IS NULL AS disappearing,
                   c.sku IS NOT NULL AND {values_differ} AS changed
            FROM {INVENTORY_STAGE} AS s
            {join} {stored}
            WHERE c.sku IS NULL OR s.sku IS NULL
               OR {differs(conn, "c", "s", (*STOCK_VALUES, "fingerprint"))}
        ), history AS (
            INSERT INTO inventory_history
                (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
                 changed_at, run_id)
            SELECT {LOC}, {WH}, sku, CASE WHEN appeared THEN 'appeared' ELSE 'changed' END,
                   old_stock, stock, price_usd, :now, {RUN}
            FROM touched
            WHERE NOT disappearing AND (appeared OR old_stock IS DISTINCT FROM stock)
            RETURNING 1
        ), upserted AS (
            INSERT INTO inventory_current ({column_list(CURRENT_FIELDS)})
            SELECT {LOC}, {WH}, {column_list(STAGED_FIELDS)}, :now, {RUN}
            FROM touched WHERE NOT disappearing
            ON CONFLICT (location_id, warehouse_code, sku) DO UPDATE SET {_assignments(conn)}
        )
        SELECT count(*) FILTER (WHERE appeared),
               count(*) FILTER (WHERE changed AND NOT disappearing),
               count(*) FILTER (WHERE disappearing),
               (SELECT count(*) FROM history)
        FROM touched
    """  # noqa: S608 - identifiers are our own constants; values are bound
    inserted, updated, disappearing, history = conn.execute(_typed(sql), params).one()
    return int(inserted), int(updated), int(disappearing), int(history)


def _remove_named(conn: Connection, gone: Sequence[str], params: dict[str, Any]) -> int:
    """Remove the stored articles ``gone`` with their history; returns how many were removed.
    Used when only part of the catalogue was staged, so the stage cannot say what is gone."""
    if is_postgres(conn):
        named = _remove_postgres("c.sku = ANY(CAST(:gone AS VARCHAR[]))")
        return int(conn.execute(named, {**params, "gone": list(gone)}).rowcount)
    each = [{**params, "sku": sku} for sku in sorted(gone)]
    history = _typed(
        f"""
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
             changed_at, run_id)
        SELECT location_id, warehouse_code, sku, 'disappeared', stock, NULL, price_usd,
               :now, {RUN}
        FROM inventory_current
        WHERE location_id = :location_id AND warehouse_code = :warehouse_code AND sku = :sku
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )
    conn.execute(history, each)
    remove = text(
        "DELETE FROM inventory_current "
        "WHERE location_id = :location_id AND warehouse_code = :warehouse_code AND sku = :sku"
    )
    return int(conn.execute(remove, each).rowcount)


def _remove_disappeared_postgres() -> TextClause:
    return _remove_postgres(
        f"NOT EXISTS (SELECT 1 FROM {INVENTORY_STAGE} AS s WHERE s.sku = c.sku)"  # noqa: S608 - our own constant
    )


def _remove_postgres(which: str) -> TextClause:
    """Remove the warehouse's stored articles ``which`` says (a condition on ``c``) and write
    their ``disappeared`` history: one statement, a row each."""
    return _typed(
        f"""
        WITH gone AS (
            DELETE FROM inventory_current AS c
            WHERE c.location_id = :location_id AND c.warehouse_code = :warehouse_code
              AND {which}
            RETURNING c.sku, c.stock, c.price_usd
        )
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
             changed_at, run_id)
        SELECT {LOC}, {WH}, sku, 'disappeared', stock, NULL, price_usd, :now, {RUN}
        FROM gone ORDER BY sku
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def _history_of_disappeared() -> TextClause:
    return _typed(
        f"""
        INSERT INTO inventory_history
            (location_id, warehouse_code, sku, change, old_stock, new_stock, price_usd,
             changed_at, run_id)
        SELECT c.location_id, c.warehouse_code, c.sku, 'disappeared', c.stock, NULL, c.price_usd,
               :now, {RUN}
        FROM inventory_current AS c
        WHERE c.location_id = :location_id AND c.warehouse_code = :warehouse_code
          AND NOT EXISTS (SELECT 1 FROM {INVENTORY_STAGE} AS s WHERE s.sku = c.sku)
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def _delete_disappeared() -> TextClause:
    # SQLite does not accept an alias on the DELETE target; the subquery names the table instead.
    return text(
        f"""
        DELETE FROM inventory_current
        WHERE location_id = :location_id AND warehouse_code = :warehouse_code
          AND NOT EXISTS (
              SELECT 1 FROM {INVENTORY_STAGE} AS s WHERE s.sku = inventory_current.sku
          )
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def upsert_products(conn: Connection, items: Iterable[CatalogueItem], now: datetime) -> int:
    """The product master, once per run from every catalogue read (duplicate skus: the last wins).

    Returns how many products were inserted or changed; identical ones are not written.
    """
    # Sorted, so two processes upserting overlapping products lock rows in the same order.
    unique = sorted({item.sku: item for item in items}.values(), key=attrgetter("sku"))
    if not unique:
        return 0
    columns: list[Column[Any]] = [products.c[name] for name in PRODUCT_FIELDS]
    stage(conn, PRODUCTS_STAGE, columns, unique, key=("sku",))
    assignments = ", ".join(f"{n} = excluded.{n}" for n in (*PRODUCT_VALUES, "updated_at"))
    sql = f"""
        INSERT INTO products ({column_list(PRODUCT_FIELDS)}, updated_at)
        SELECT {column_list(PRODUCT_FIELDS, "s")}, :now
        FROM {PRODUCTS_STAGE} AS s LEFT JOIN products AS p ON p.sku = s.sku
        WHERE (p.sku IS NULL OR {differs(conn, "p", "s", PRODUCT_VALUES)})
        ON CONFLICT (sku) DO UPDATE SET {assignments}
    """  # noqa: S608 - identifiers are our own constants; values are bound
    return int(conn.execute(_typed(sql), {"now": now}).rowcount)
