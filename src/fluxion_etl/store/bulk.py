"""Bulk-load plumbing shared by the loaders: staging tables, value encoding, COPY.

Every loader follows one shape whatever the number of rows: stage the batch in a temporary table
(PostgreSQL: ``COPY``; SQLite: one ``executemany``), then change the real tables with a handful of
set-based statements that compare staged and stored rows in the database. (SQLite sales skip the
stage: one ``executemany`` of an upsert that skips identical rows is faster there.) The number of
statements is therefore constant, and rows that did not change are never written.

Rows go to the driver as plain tuples, not through SQLAlchemy's per-row type processing: at 200,000
lines that processing costs more than the database work. The encodings here are exactly those of
``store.types`` (canonical decimal text and fixed-width UTC text on SQLite; native types on
PostgreSQL), so staged and stored values compare equal when they are equal.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, getcontext
from itertools import repeat
from operator import attrgetter
from typing import Any

import psycopg
from sqlalchemy import Column, Connection, Date
from sqlalchemy.exc import DBAPIError

from fluxion_etl.store.types import Money, UtcDateTime, decimal_text, utc_text

Row = tuple[Any, ...]


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def differs(conn: Connection, left: str, right: str, names: Iterable[str]) -> str:
    """SQL that is true when any of ``names`` differs between two aliases, NULLs included."""
    op = "IS DISTINCT FROM" if is_postgres(conn) else "IS NOT"
    return "(" + " OR ".join(f"{left}.{n} {op} {right}.{n}" for n in names) + ")"


def column_list(names: Iterable[str], alias: str | None = None) -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + n for n in names)


# --- staging tables ------------------------------------------------------------------------------


def stage(
    conn: Connection,
    name: str,
    columns: Sequence[Column[Any]],
    records: Sequence[Any],
    *,
    key: Sequence[str] = (),
    leading: Sequence[Any] = (),
    exists: bool = False,
    by_columns: bool = False,
) -> None:
    """Fill the temporary table ``name`` (created on first use, emptied first) from ``records``,
    objects with an attribute named like each column; the first ``len(leading)`` columns take
    the values ``leading`` in every row instead.

    The table lives for the session; PostgreSQL empties it at commit (``ON COMMIT DELETE ROWS``) so
    staged data never outlives the caller's transaction. Three statements, however many rows.
    ``exists``: the caller has just seen the table in this session (PostgreSQL), so it is not
    created again, one round trip fewer. ``by_columns``: see ``copy_records``.
    """
    _create_stage(conn, name, columns, key, exists=exists)
    if not records:
        return
    if is_postgres(conn):
        copy_records(conn, name, columns, records, before=leading, by_columns=by_columns)
    else:
        names = [c.name for c in columns[len(leading) :]]
        all_names = column_list(c.name for c in columns)
        placeholders = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO temp.{name} ({all_names}) VALUES ({placeholders})"  # noqa: S608 - identifiers are our own constants; values are bound
        encoded = sqlite_rows(columns[len(leading) :], columns_of(records, names), before=leading)
        conn.exec_driver_sql(insert, encoded)


def _create_stage(
    conn: Connection,
    name: str,
    columns: Sequence[Column[Any]],
    key: Sequence[str],
    *,
    exists: bool = False,
) -> None:
    definitions = [f"{c.name} {type_ddl(conn, c)}" for c in columns]
    if key:
        definitions.append(f"PRIMARY KEY ({column_list(key)})")
    body = ", ".join(definitions)
    if is_postgres(conn):
        _prepare_postgres_stage(conn, name, body, exists=exists)
    else:
        conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({body})")
        conn.exec_driver_sql(f"DELETE FROM temp.{name}")  # noqa: S608 - identifiers are our own constants; values are bound


# The transaction that last filled each staging table of a connection (in ``conn.info``).
_STAGED_IN = "fluxion_staged_in"


def _prepare_postgres_stage(conn: Connection, name: str, body: str, *, exists: bool) -> None:
    """At most one statement, one round trip: the table is emptied at every commit (``ON COMMIT
    DELETE ROWS``) and what a rolled-back transaction put in it is invisible, so only a table
    already filled in this very transaction (several catalogues of one location) needs a
    ``DELETE``, and one the caller knows ``exists`` nothing at all.
    On a busy machine every round trip waits for the server process to get a core."""
    transaction = conn.get_transaction()
    staged_in: dict[str, object] = conn.info.setdefault(_STAGED_IN, {})
    if transaction is not None and staged_in.get(name) is transaction:
        conn.exec_driver_sql(f"DELETE FROM {name}")  # noqa: S608 - identifiers are our own constants; values are bound
    elif not exists:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {name} ({body}) ON COMMIT DELETE ROWS"
        )
    staged_in[name] = transaction


def copy_records(
    conn: Connection,
    table: str,
    columns: Sequence[Column[Any]],
    records: Sequence[Any],
    *,
    before: Sequence[Any] = (),
    after: Sequence[Any] = (),
    as_text: Collection[str] = (),
    by_columns: bool = False,
) -> None:
    """``COPY table (columns) FROM STDIN`` of ``records`` on the connection's own psycopg
    connection (same transaction). The first ``len(before)`` columns take the constants
    ``before`` in every row, the last ``len(after)`` the constants ``after``, every other the
    attribute of each record named like it.

    Rows go through psycopg's dumpers, or, ``by_columns``, as text spelled column by column in C
    loops (``_column_text``), ``COPY_CHUNK`` rows a write so that the server parses one chunk
    while the next is spelled. That pays for narrow rows, where the Python calls of psycopg's
    ``write_row`` cost as much as the values: an inventory stage of five columns copies in about
    0.86 of the time. Not for wide ones: a sales line's 45 values spell slower than psycopg dumps
    them (``str`` of a Decimal). A chunk holding a value that spelling does not cover goes
    through psycopg's dumpers all the same.

    The columns named in ``as_text`` take values already spelled as the server's input (a
    constant formatted once: dumping one ``datetime`` per row doubled the CPU of a 15,000-row
    COPY). Driver errors are raised as SQLAlchemy's ``DBAPIError`` family like every other
    statement's.
    """
    values_end = len(columns) - len(after)
    names = [c.name for c in columns[len(before) : values_end]]
    sql = f"COPY {table} ({column_list(c.name for c in columns)}) FROM STDIN"
    types = ["text" if c.name in as_text else _postgres_type_name(conn, c) for c in columns]
    kinds = [_KIND_OF_TYPE.get(name) for name in types]
    driver = conn.connection.driver_connection
    # The text is encoded as the connection's encoding is; psycopg's text dumper sends UTF-8
    # where that is SQL_ASCII, so spell only on UTF-8 connections (the product's).
    spelling = by_columns and bool(names) and driver.info.encoding == "utf-8"  # type: ignore[union-attr]
    lead: list[str] = []
    tail: list[str] = []
    if spelling:
        constants = [
            _column_text([value], kind)
            for value, kind in zip(
                (*before, *after), kinds[: len(before)] + kinds[values_end:], strict=True
            )
        ]
        spelling = None not in constants
        lead = [text[0] for text in constants[: len(before)] if text is not None]
        tail = [text[0] for text in constants[len(before) :] if text is not None]
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
            copy.set_types(types)
            for start in range(0, len(records), COPY_CHUNK):
                chunk = records[start : start + COPY_CHUNK]
                text = None
                if spelling:
                    text = _chunk_text(chunk, names, kinds[len(before) : values_end], lead, tail)
                if text is not None:
                    copy.write(text)
                    continue
                # psycopg holds back the rows it formats until it has 32 KB: once a chunk goes
                # through it, so do the rest, and the rows reach the table in their order.
                spelling = False
                for row in framed(rows_of(chunk, names), before, after):
                    copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


# Rows per write of a COPY; also bounds the text held at once (a sales chunk: about 1 MB).
COPY_CHUNK = 2000
_NULL_TEXT = "\\N"
_BOOL_TEXT = {True: "t", False: "f"}
# What COPY's text format escapes; NUL is left to psycopg, whose dumpers refuse it by name.
_ESCAPED = ("\\", "\t", "\n", "\r")
# The Python type whose values a column of each type (as ``_postgres_type_name`` names it) is
# spelled from; a value of any other type, or a column of another type, is left to psycopg, which
# refuses what it cannot dump (a str for a numeric) and dumps the rest its own way.
_KIND_OF_TYPE: dict[str, type] = {
    "text": str,
    "varchar": str,
    "numeric": Decimal,
    "smallint": int,
    "integer": int,
    "bigint": int,
    "boolean": bool,
    "timestamp with time zone": datetime,
    "date": date,
}


def _chunk_text(
    chunk: Sequence[Any],
    names: Sequence[str],
    kinds: Sequence[type | None],
    lead: Sequence[str],
    tail: Sequence[str],
) -> str | None:
    """The COPY text of a chunk of records (a line each, constants around), or None."""
    texts = [
        _column_text(values, kind)
        for values, kind in zip(columns_of(chunk, names), kinds, strict=True)
    ]
    if None in texts:
        return None
    lines = zip(*map(repeat, lead), *texts, *map(repeat, tail), strict=False)  # repeat()s
    return "\n".join(map("\t".join, lines)) + "\n"


def _escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _column_text(values: list[Any], kind: type | None) -> list[str] | None:
    """Each value of a column whose values are of type ``kind`` (or None) as COPY's text format
    spells it, as psycopg's text dumpers would (``str`` of a finite Decimal or an int, ISO 8601
    of an aware datetime or a date, ``t``/``f``, ``\\N`` for NULL, text escaped), or None when a
    value is left to those dumpers: one of another type, NaN, a naive datetime, a NUL."""
    kinds = set(map(type, values))
    has_null = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return [_NULL_TEXT] * len(values)
    if kind is None or kinds != {kind}:
        return None
    present = [value for value in values if value is not None] if has_null else values
    text = _spelled(kind, present)
    if text is None or not has_null:
        return text
    spelled = iter(text)
    return [_NULL_TEXT if value is None else next(spelled) for value in values]


def _spelled(kind: type, values: list[Any]) -> list[str] | None:
    if kind is str:
        return _text_spelled(values)
    if kind is Decimal:
        # A finite Decimal spells itself with digits, a sign, a point and an exponent's "E";
        # NaN, sNaN and Infinity are the only spellings with an "N" or an "I".
        text = list(map(str, values))
        joined = "".join(text)
        return None if "N" in joined or "I" in joined else text
    if kind is datetime and None in map(datetime.utcoffset, values):
        return None
    speller = _SPELLERS.get(kind)
    return None if speller is None else list(map(speller, values))


def _text_spelled(values: list[str]) -> list[str] | None:
    joined = "".join(values)
    if "\x00" in joined:
        return None
    if any(special in joined for special in _ESCAPED):
        return list(map(_escape, values))
    return values


# Exactly these types (``type(value) is``): a subclass may spell itself otherwise.
_SPELLERS: dict[type, Callable[[Any], str]] = {
    int: str,
    bool: _BOOL_TEXT.__getitem__,
    datetime: datetime.isoformat,
    date: date.isoformat,
}


def _postgres_type_name(conn: Connection, column: Column[Any]) -> str:
    """``VARCHAR(64)`` → ``varchar``: the name psycopg's type registry knows."""
    return type_ddl(conn, column).split("(")[0].strip().lower()


# (dialect, table, column) → DDL type; compiling types is slow enough to show on small batches.
_TYPE_DDL: dict[tuple[str, str, str], str] = {}


def type_ddl(conn: Connection, column: Column[Any]) -> str:
    """The column's type as this dialect spells it in DDL (``NUMERIC``, ``VARCHAR(40)``)."""
    key = (conn.dialect.name, column.table.name, column.name)
    ddl = _TYPE_DDL.get(key)
    if ddl is None:
        ddl = _TYPE_DDL[key] = column.type.compile(dialect=conn.dialect)
    return ddl


# --- records to column values ---------------------------------------------------------------------


def rows_of(records: Iterable[Any], names: Sequence[str]) -> Iterator[Row]:
    """The attributes ``names`` of each record as a tuple, lazily (C-speed ``attrgetter``)."""
    if len(names) == 1:
        return ((value,) for value in map(attrgetter(names[0]), records))
    return map(attrgetter(*names), records)


def framed(
    rows: Iterable[Row], before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> Iterator[Row]:
    """Every row with the constants ``before`` and ``after`` around it, lazily."""
    return ((*before, *row, *after) for row in rows)


def columns_of(records: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """The attribute ``name`` of every record, one list per name (C-speed ``attrgetter``)."""
    return [list(map(attrgetter(name), records)) for name in names]


class Memo(dict[Any, Any]):
    """``encode(key)`` computed once per distinct key: sales repeat prices, rates and times.

    Look values up with ``memo[key]`` (a subscript: no Python call on a hit). ``None`` maps to
    ``None``.
    """

    def __init__(self, encode: Callable[[Any], Any]) -> None:
        super().__init__({None: None})
        self._encode = encode

    def __missing__(self, key: Any) -> Any:
        encoded = self[key] = self._encode(key)
        return encoded


def _canonical_decimal_text(text: str) -> str:
    """``decimal_text(Decimal(text))`` for ``text = str(some Decimal)``, without the Decimal when
    the text is canonical already (most are: a million values per large load).

    ``str(Decimal)`` spells a finite value as plain digits unless it needs an exponent (``E``).
    Plain digits are canonical unless a fraction ends in a zero or the value is ``-0``; names
    (``NaN``, ``Infinity``), exponents and texts longer than the context's precision (which
    ``normalize`` would round) take the exact path.
    """
    if (
        "E" in text
        or "N" in text
        or "I" in text
        or text == "-0"
        or (text[-1:] == "0" and "." in text)
        or len(text) > getcontext().prec
    ):
        return decimal_text(Decimal(text))
    return text


def money_texts() -> Memo:
    """``str(decimal)`` → the canonical text ``Money`` stores on SQLite; use ``m[str(value)]``.

    Keyed by ``str(value)`` (C-fast and exact) rather than by the Decimal itself: hashing a fresh
    Decimal costs more than formatting it. ``str(None)`` is ``"None"``, which no Decimal spells,
    so it maps to ``None`` and nullable values need no test of their own.
    """
    memo = Memo(_canonical_decimal_text)
    memo["None"] = None
    return memo


def _utc_text(value: datetime) -> str:
    """``utc_text(value)``, through ``isoformat`` (C) rather than ``strftime`` (several times
    slower) where both spell the same: aware times from year 1000 on."""
    if value.tzinfo is None:
        return utc_text(value)  # raises: naive times are refused
    instant = value.astimezone(UTC)
    if instant.year < 1000:  # strftime does not pad %Y
        return utc_text(value)
    return instant.isoformat(" ", "microseconds")[:26]


def utc_texts() -> Memo:
    """An aware datetime → the UTC text ``UtcDateTime`` stores on SQLite."""
    return Memo(_utc_text)


def _encode_for_sqlite(column: Column[Any], values: Sequence[Any]) -> Sequence[Any]:
    """One column's values in the text form ``store.types`` stores on SQLite."""
    if isinstance(column.type, Money):
        money = money_texts()
        return [money[str(v)] for v in values]
    if isinstance(column.type, UtcDateTime):
        instants = utc_texts()
        return [instants[v] for v in values]
    if isinstance(column.type, Date):
        days = Memo(date.isoformat)
        return [days[v] for v in values]
    return values


def sqlite_rows(
    columns: Sequence[Column[Any]],
    values: Sequence[Sequence[Any]],
    *,
    before: Sequence[Any] = (),
    after: Sequence[Any] = (),
) -> list[Row]:
    """Rows for ``executemany``: Money, UtcDateTime and Date in the text ``store.types`` stores.

    ``before``/``after`` are constants put around every row (e.g. the location id). Encoding goes
    column by column through a memo dict (a subscript per value, no Python call on a hit), and the
    rows are assembled by ``zip`` in C.
    """
    encoded = [_encode_for_sqlite(c, v) for c, v in zip(columns, values, strict=True)]
    constants_before = [repeat(v) for v in before]
    constants_after = [repeat(v) for v in after]
    return list(zip(*constants_before, *encoded, *constants_after, strict=False))  # repeat()s
