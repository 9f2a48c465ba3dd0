"""Sales lines: idempotent bulk upsert on the real key, and removal of voids (SPEC §4.6, §4.9).

The key is ``(location_id, invoice_number, line_number)`` (``uq_sales_lines_key``): invoice numbers
repeat across stores. A line whose every column already matches is not written at all, so
re-running a window changes nothing (PostgreSQL: no new row version, ``n_tup_upd`` stays flat).

Both functions work inside the caller's transaction and never commit: the caller commits the load,
its counters and its coverage together (SPEC §4.5). Each runs a constant number of statements.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import xxhash
from sqlalchemy import Column, Connection, TextClause, bindparam, select, text

from fluxion_etl.domain.records import KnownLines, SalesLine
from fluxion_etl.store.bulk import column_list, differs, is_postgres, stage
from fluxion_etl.store.code_version import DECODING_MODULES, source_version
from fluxion_etl.store.sales_rows import sqlite_row_encoder
from fluxion_etl.store.schema import sales_lines
from fluxion_etl.store.types import UtcDateTime, utc_text

SALES_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SalesLine))
KEY_FIELDS = ("invoice_number", "line_number")
# Everything but the key and the fingerprint: what makes a stored line "changed". The
# fingerprint is written with changed values and never alone, so the counts say what changed
# for the chain, and a stored fingerprint always names bytes that decode to the stored values.
VALUE_FIELDS = tuple(n for n in SALES_FIELDS if n not in (*KEY_FIELDS, "fingerprint"))
WRITTEN_FIELDS = (*VALUE_FIELDS, "fingerprint")
SALES_STAGE = "fluxion_stage_sales_lines"  # the lines alone: the location is bound
KEYS_STAGE = "fluxion_stage_sales_keys"


_key_of = attrgetter(*KEY_FIELDS)  # SalesLine.key, without a Python call per line


class SalesKey(NamedTuple):
    """A key of ``keep_keys`` with attributes named like the staging columns."""

    invoice_number: str
    line_number: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    inserted: int
    updated: int
    unchanged: int


# The modules whose code decides what a sales line's bytes end up as in the database.
_DECIDING_MODULES = (
    *DECODING_MODULES,
    "fluxion_etl.store.sales_loader",
    "fluxion_etl.store.sales_rows",
)
_CODE_VERSION = source_version(_DECIDING_MODULES)  # when imported: the code this process runs


def fingerprint_seed(*, warehouse_code: str, zone: str) -> int:
    """The seed of the lines' fingerprints (``klk.decode.decode_sales``): what, besides a line's
    bytes, decides the row it is stored as: the source of the modules that decode and store it
    (and msgspec's version), the warehouse the response was asked for and the zone its times
    are read in. A change to any of them gives other fingerprints, so nothing stored before is
    taken as already loaded (its lines are decoded and compared again)."""
    basis = f"{_CODE_VERSION}\n{warehouse_code}\n{zone}"
    return xxhash.xxh3_64_intdigest(basis.encode())


def known_lines(
    conn: Connection, *, location_id: str, start: datetime, end: datetime
) -> KnownLines:
    """The fingerprints of the location's stored lines sold from ``start`` to ``end`` (both
    included), with their keys: what a response for that window may send again. A fingerprint
    two stored lines share (only a hand edit can do that) is left out: its lines are decoded."""
    c = sales_lines.c
    query = select(c.fingerprint, c.invoice_number, c.line_number).where(
        c.location_id == location_id,
        c.sold_at >= start,
        c.sold_at <= end,
        c.fingerprint.is_not(None),
    )
    by_fingerprint: dict[int, tuple[str, int]] = {}
    shared: set[int] = set()
    for fingerprint, invoice_number, line_number in conn.execute(query):
        if fingerprint in by_fingerprint:
            shared.add(fingerprint)
        by_fingerprint[fingerprint] = (invoice_number, line_number)
    for fingerprint in shared:
        del by_fingerprint[fingerprint]
    return KnownLines(by_fingerprint=by_fingerprint)


def load_sales(
    conn: Connection,
    *,
    location_id: str,
    lines: Sequence[SalesLine],
    run_id: int | None,
    now: datetime,
) -> LoadResult:
    """Upsert ``lines`` of one location; in-batch duplicates are stored once (the last one wins)."""
    unique = list(dict(zip(map(_key_of, lines), lines, strict=True)).values())
    if not unique:
        return LoadResult(0, 0, 0)
    if is_postgres(conn):
        inserted, updated = _upsert_postgres(conn, location_id, unique, run_id, now)
    else:
        inserted, updated = _upsert_sqlite(conn, location_id, unique, run_id, now)
    return LoadResult(inserted, updated, len(unique) - inserted - updated)


def _field_columns() -> list[Column[Any]]:
    return [sales_lines.c[name] for name in SALES_FIELDS]


def _upsert_postgres(
    conn: Connection,
    location_id: str,
    lines: Sequence[SalesLine],
    run_id: int | None,
    now: datetime,
) -> tuple[int, int]:
    """COPY into a staging table, then one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` that counts.

    The unique index finds each stored line once (whatever the planner believes about the
    table's size). A line whose values are all equal is not updated: no new row version, its
    ``xmin`` stays. PostgreSQL does take a row lock on it before it evaluates the ``WHERE`` (the
    tuple's ``xmax`` records the lock); that is the price of finding, inserting and comparing in
    one pass instead of two. ``RETURNING xmax = 0`` tells an inserted line (no locker) from an
    updated one (locked by this transaction first), and the outer ``SELECT`` counts both, so
    the lines never travel back to the client.
    """
    stage(conn, SALES_STAGE, _field_columns(), lines)
    params = {"location_id": location_id, "run_id": run_id, "now": now}
    inserted, written = conn.execute(_postgres_merge(), params).one()
    return int(inserted), int(written) - int(inserted)


def _postgres_merge() -> TextClause:
    assignments = ", ".join(f"{n} = excluded.{n}" for n in WRITTEN_FIELDS)
    return _typed(
        f"""
        WITH written AS (
            INSERT INTO sales_lines AS t
                (location_id, {column_list(SALES_FIELDS)}, loaded_at, run_id)
            SELECT CAST(:location_id AS VARCHAR), {column_list(SALES_FIELDS, "s")},
                   :now, CAST(:run_id AS BIGINT)
            FROM {SALES_STAGE} AS s
            ON CONFLICT ON CONSTRAINT uq_sales_lines_key DO UPDATE
            SET {assignments}, loaded_at = excluded.loaded_at, run_id = excluded.run_id
            WHERE ({column_list(VALUE_FIELDS, "t")})
                  IS DISTINCT FROM ({column_list(VALUE_FIELDS, "excluded")})
            RETURNING t.xmax = 0 AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted), count(*) FROM written
        """  # noqa: S608 - identifiers are our own constants; values are bound
    )


def _typed(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("now", type_=UtcDateTime()))


def _upsert_sqlite(
    conn: Connection,
    location_id: str,
    lines: Sequence[SalesLine],
    run_id: int | None,
    now: datetime,
) -> tuple[int, int]:
    """One ``executemany`` of an upsert that skips identical rows; SQLite counts only real changes.

    Rows inserted are those with an id above the previous maximum (SQLite gives a new rowid of
    max + 1, and this transaction is the only writer); the rest of the changes are updates.
    """
    last_id = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM sales_lines").scalar_one()
    rows = list(map(sqlite_row_encoder(location_id, utc_text(now), run_id), lines))
    changed = conn.exec_driver_sql(_sqlite_upsert(conn), rows).rowcount
    inserted = conn.exec_driver_sql(
        "SELECT count(*) FROM sales_lines WHERE id > ?", (last_id,)
    ).scalar_one()
    return int(inserted), int(changed) - int(inserted)


def _sqlite_upsert(conn: Connection) -> str:
    names = ("location_id", *SALES_FIELDS, "loaded_at", "run_id")
    assignments = ", ".join(f"{n} = excluded.{n}" for n in (*WRITTEN_FIELDS, "loaded_at", "run_id"))
    placeholders = ", ".join("?" for _ in names)
    return f"""
        INSERT INTO sales_lines ({column_list(names)}) VALUES ({placeholders})
        ON CONFLICT (location_id, invoice_number, line_number) DO UPDATE SET {assignments}
        WHERE {differs(conn, "sales_lines", "excluded", VALUE_FIELDS)}
    """  # noqa: S608 - identifiers are our own constants; values are bound


def delete_missing_sales(
    conn: Connection,
    *,
    location_id: str,
    start: datetime,
    end: datetime,
    keep_keys: Collection[tuple[str, int]],
    apply: bool,
) -> int:
    """Lines of ``location_id`` sold in [start, end) whose key is not in ``keep_keys`` (voids).

    Returns how many there are; deletes them only when ``apply`` (the caller first checks the
    mass-deletion threshold, SPEC §4.9). Other locations are never touched: invoice numbers repeat.
    """
    key_columns = [sales_lines.c.invoice_number, sales_lines.c.line_number]
    keys = [SalesKey(*key) for key in sorted(set(keep_keys))]
    stage(conn, KEYS_STAGE, key_columns, keys, key=KEY_FIELDS)
    action = "DELETE FROM sales_lines" if apply else "SELECT count(*) FROM sales_lines"
    sql = f"""
        {action}
        WHERE location_id = :location_id AND sold_at >= :start AND sold_at < :end
          AND NOT EXISTS (
              SELECT 1 FROM {KEYS_STAGE} AS k
              WHERE k.invoice_number = sales_lines.invoice_number
                AND k.line_number = sales_lines.line_number
          )
    """  # noqa: S608 - identifiers are our own constants; values are bound
    statement = text(sql).bindparams(
        bindparam("start", type_=UtcDateTime()), bindparam("end", type_=UtcDateTime())
    )
    result = conn.execute(statement, {"location_id": location_id, "start": start, "end": end})
    return int(result.rowcount) if apply else int(result.scalar_one())
