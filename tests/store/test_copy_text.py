"""``bulk.copy_records``: the COPY text it spells column by column stores exactly what psycopg's
own dumpers store, row by row, for every kind of value the loaders send and for those it leaves
to psycopg."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from fluxion_etl.store import bulk

metadata = MetaData()
copied = Table(
    "copied",
    metadata,
    Column("location_id", String(64)),
    Column("t", Text),
    Column("v", Numeric(24, 6)),
    Column("n", BigInteger),
    Column("b", Boolean),
    Column("at", DateTime(timezone=True)),
    Column("d", Date),
    Column("run_id", BigInteger),
)
by_psycopg = Table("by_psycopg", metadata, *(Column(c.name, c.type) for c in copied.columns))
FIELDS = ("t", "v", "n", "b", "at", "d")
CARACAS = timezone(timedelta(hours=-4))


@dataclass(frozen=True)
class Record:
    t: Any
    v: Any
    n: Any
    b: Any
    at: Any
    d: Any


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def row_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records went through psycopg's dumpers (the row-by-row path)."""
    taken: list[int] = []
    rows_of = bulk.rows_of

    def counting(records: Sequence[Any], names: Sequence[str]) -> Iterator[bulk.Row]:
        taken.append(len(records))
        return rows_of(records, names)

    monkeypatch.setattr(bulk, "rows_of", counting)
    return taken


def by_dumpers(conn: Connection, records: Sequence[Record], before: Any, after: Any) -> None:
    """The reference: every row through psycopg's dumpers, as the loaders sent them before."""
    columns = ", ".join(c.name for c in by_psycopg.columns)
    types = [bulk._postgres_type_name(conn, c) for c in by_psycopg.columns]
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY by_psycopg ({columns}) FROM STDIN") as copy:
        copy.set_types(types)
        for record in records:
            copy.write_row((before, *(getattr(record, name) for name in FIELDS), after))


def stored(conn: Connection, table: Table) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(select(table).order_by(table.c.t, table.c.n))]


def copy_both(
    pg: Engine, records: Sequence[Record], *, before: Any = "tienda_01", after: Any = 7
) -> list[tuple[Any, ...]]:
    """Copy ``records`` both ways; return what the product's way stored, once checked equal."""
    with pg.begin() as conn:
        bulk.copy_records(
            conn,
            "copied",
            list(copied.columns),
            records,
            before=(before,),
            after=(after,),
            by_columns=True,
        )
        by_dumpers(conn, records, before, after)
        ours = stored(conn, copied)
        assert list(map(repr, ours)) == list(map(repr, stored(conn, by_psycopg)))  # NaN != NaN
        return ours


def record(i: int, /, **values: Any) -> Record:
    plain = {
        "t": f"article {i}",
        "v": Decimal(i) / 4,
        "n": i,
        "b": i % 2 == 0,
        "at": datetime(2026, 1, 5, 12, i % 60, tzinfo=UTC),
        "d": date(2026, 1, 1 + i % 28),
    }
    return Record(**(plain | values))


AWKWARD_TEXT = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "", "ñandú €",
    "backspace\x08", "vertical\x0btab", "form\x0cfeed", "line\u2028separator",
]  # fmt: skip


def test_every_kind_the_loaders_send_is_stored_as_psycopg_stores_it(
    pg: Engine, row_path: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "COPY_CHUNK", 4)  # several chunks, a short last one
    decimals = [Decimal("1E+2"), Decimal("-0"), Decimal("0.000"), Decimal("-123456789.123456")]
    times = [
        datetime(2026, 1, 5, 23, 59, 59, 999999, tzinfo=CARACAS),
        datetime(1999, 12, 31, tzinfo=UTC),
    ]
    records = [
        *(record(i, t=text) for i, text in enumerate(AWKWARD_TEXT)),
        *(record(20 + i, v=value) for i, value in enumerate(decimals)),
        *(record(30 + i, at=value) for i, value in enumerate(times)),
        record(40, n=2**63 - 1),
        record(41, n=-(2**63)),
        record(42, t=None, v=None, n=None, b=None, at=None, d=None),
    ]
    ours = copy_both(pg, records)

    assert row_path == [], "every chunk was spelled as text"
    assert len(ours) == len(records)
    assert {row[0] for row in ours} == {"tienda_01"}
    assert {row[-1] for row in ours} == {7}
    assert {row[1] for row in ours} >= set(AWKWARD_TEXT)
    assert {row[2] for row in ours} >= {Decimal(100), Decimal(0), Decimal("-123456789.123456")}
    assert {row[5] for row in ours} >= {times[0]}


def test_constants_of_every_kind_and_null_frame_each_row(pg: Engine, row_path: list[int]) -> None:
    ours = copy_both(pg, [record(1), record(2)], before="tab\tin a constant", after=None)

    assert row_path == []
    assert [(row[0], row[-1]) for row in ours] == [("tab\tin a constant", None)] * 2


@pytest.mark.parametrize(
    "odd",
    [
        {"v": Decimal("NaN")},  # left to psycopg, which spells NaN itself
        {"at": datetime(2026, 1, 5, 12, 0)},  # naive: left to psycopg
        {"n": True},  # a bool among ints: a mix of kinds
    ],
    ids=["nan", "naive-datetime", "mixed-kinds"],
)
def test_a_chunk_with_a_value_not_spelled_here_goes_through_psycopg(
    pg: Engine, row_path: list[int], monkeypatch: pytest.MonkeyPatch, odd: dict[str, Any]
) -> None:
    monkeypatch.setattr(bulk, "COPY_CHUNK", 3)
    records = [record(i) for i in range(6)]
    records[4] = record(4, **odd)

    ours = copy_both(pg, records)

    assert row_path == [3], "the chunk holding the odd value went row by row"
    assert len(ours) == 6


def test_after_a_chunk_through_psycopg_the_rest_follows_it_and_rows_keep_their_order(
    pg: Engine, row_path: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg holds back the rows it formats: text written after them would overtake them."""
    monkeypatch.setattr(bulk, "COPY_CHUNK", 2)
    records = [record(i) for i in range(7)]
    records[2] = record(2, v=Decimal("NaN"))

    copy_both(pg, records)

    assert row_path == [2, 2, 1], "the first chunk spelled, every one from the odd one on not"
    with pg.connect() as conn:
        physical = conn.execute(text("SELECT n FROM copied ORDER BY ctid")).scalars().all()
    assert physical == list(range(7))


def outcome(pg: Engine, write: Callable[[Connection], None], table: Table) -> str:
    """What one way of copying did: the rows it stored, or the error it raised."""
    try:
        with pg.begin() as conn:
            write(conn)
            return repr(stored(conn, table))
    except Exception as exc:  # the error is the outcome compared
        error = exc.orig if isinstance(exc, DBAPIError) else exc
        return type(error).__name__


@pytest.mark.parametrize(
    "odd",
    [{"t": 12345}, {"v": "12.5"}, {"n": Decimal(7)}, {"n": "7"}, {"n": True}, {"at": "2026-01-05"},
     {"v": Decimal("-Infinity")}],
    ids=["int-as-text", "str-as-numeric", "decimal-as-bigint", "str-as-bigint", "bool-as-bigint",
         "str-as-timestamp", "infinity-beyond-the-columns-scale"],
)  # fmt: skip
def test_values_of_another_type_than_their_column_meet_psycopgs_own_dumpers(
    pg: Engine, row_path: list[int], odd: dict[str, Any]
) -> None:
    """Spelling goes by the column's type as well as the value's: a value psycopg would refuse
    is refused, one it would convert is converted, as without spelling (and an infinite Decimal,
    which psycopg spells itself, meets the server's refusal either way)."""
    records = [record(i, **odd) for i in range(3)]  # a whole chunk of them

    def spelled(conn: Connection) -> None:
        bulk.copy_records(conn, "copied", list(copied.columns), records,
                          before=("x",), after=(1,), by_columns=True)  # fmt: skip

    assert outcome(pg, spelled, copied) == outcome(
        pg, lambda conn: by_dumpers(conn, records, "x", 1), by_psycopg
    )
    assert row_path == [3]


def test_a_nul_character_fails_the_copy_with_psycopgs_own_error(pg: Engine) -> None:
    with pytest.raises(DBAPIError, match="NUL"), pg.begin() as conn:
        bulk.copy_records(conn, "copied", list(copied.columns), [record(1, t="a\x00b")],
                          before=("x",), after=(1,), by_columns=True)  # fmt: skip
    with pg.connect() as conn:
        assert stored(conn, copied) == []


def test_no_records_copy_no_rows(pg: Engine, row_path: list[int]) -> None:
    with pg.begin() as conn:
        bulk.copy_records(
            conn, "copied", list(copied.columns), [], before=("x",), after=(1,), by_columns=True
        )
        assert stored(conn, copied) == []
    assert row_path == []
