"""The trigger calls' shared read on PostgreSQL, and the insert that queues their run, made on
the event loop (``api.lookups``, ``api.trigger``).

In a worker thread the read cost a thread hand-off each way and, worse, the GIL back after every
round trip (a ping, four statements, a rollback): while the loop was busy answering calls, each
wait could last the interpreter's switch interval (5 ms), and a batch took 9–30 ms for four
one-row queries. Here one psycopg ``AsyncConnection`` (autocommit, the engine's own connection
parameters) sends the four statements in one pipeline: one round trip, awaited on the loop.

The statements are SQLAlchemy's, compiled once for the engine's dialect, and every column is
decoded by its SQLAlchemy type (aware UTC instants, JSON), so the rows are those the threaded read
gets; the store's own row builders (``tokens``, ``ledger``, ``leases``) turn them into records.
A database error is raised as the error SQLAlchemy raises for it (so the API answers 503, or 500,
as it does on the threaded path). A connection the server has closed (a restart, an idle timeout,
``pg_terminate_backend``) is not left to fail the next burst of calls: before each batch, one that
has something to read while idle (the server's last word) is pinged and replaced if gone, and a
read whose connection is lost on the way is sent once more on a new one. An insert so lost is not
resent: it may have been committed, and a run without a key would be queued twice (its callers
answer 503; a run it did queue is relaunched by the service, as after a crash).

Queueing a run in a worker thread (``engine.submit``) cost the same waits, and more: a pooled
connection (opened anew when the pool's idle ones were taken), its ping, ``BEGIN``, the insert and
``COMMIT``, each round trip waiting for the GIL; timed inside the serve process under 200 callers
(23:42 UTC, 2026-12-05), a queue took 10–50 ms and the hand-offs to and from the thread up to 30 ms
more. ``queue_run`` sends the very
statement ``ledger.create_run`` runs (``INSERT … ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id``, the same column values, bound through the columns' SQLAlchemy types) on the
loop's connection, the inserts of concurrent calls in one pipeline: one round trip, and the unique
key still decides between concurrent calls and processes. A batch inserts its rows in key order,
so two processes' batches wait for each other's keys in one order and never deadlock; a batch
that fails all the same (a deadlock with another writer, a serialization failure, a row the
database refuses) is inserted again one row at a time, so each caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import select as io_select
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
import structlog
from anyio import to_thread
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, RowMapping, Select, String, any_, bindparam, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY

from fluxion_etl.domain.states import Job
from fluxion_etl.store import ledger, tokens
from fluxion_etl.store.leases import LeaseRow
from fluxion_etl.store.schema import api_tokens, leases, runs

log = structlog.get_logger("fluxion.api")

Row = dict[str, Any]
Waiter = asyncio.Future[int | None]  # a queue_run call's run id (None: the key's run exists)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Statement:
    """A select compiled for one dialect, with each column's result processor."""

    sql: str
    defaults: dict[str, Any]  # the values bound in the query itself
    columns: Sequence[tuple[str, Callable[[Any], Any] | None]]

    @classmethod
    def compile(cls, query: Select[Any], engine: Engine) -> Statement:
        dialect = engine.dialect
        columns = [
            (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in query.selected_columns
        ]
        compiled = query.compile(dialect=dialect)
        return cls(compiled.string, dict(compiled.params), columns)

    def params(self, **values: Any) -> dict[str, Any]:
        return self.defaults | values

    def rows(self, fetched: Sequence[tuple[Any, ...]]) -> list[Row]:
        return [
            {name: value if decode is None else decode(value) for (name, decode), value in
             zip(self.columns, raw, strict=True)}
            for raw in fetched
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunInsert:
    """``ledger.create_run``'s insert for a key, compiled once, each value bound by its column's
    type (JSON, aware instants) as SQLAlchemy binds it."""

    sql: str
    binds: Mapping[str, Callable[[Any], Any] | None]

    @classmethod
    def compile(cls, engine: Engine, names: Sequence[str] = ledger.QUEUED_RUN_COLUMNS) -> RunInsert:
        dialect = engine.dialect
        query = (
            postgresql.insert(runs)
            .values({name: bindparam(name, type_=runs.c[name].type) for name in names})
            .on_conflict_do_nothing(index_elements=[runs.c.idempotency_key])
            .returning(runs.c.id)
        )
        binds = {
            name: runs.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        }
        return cls(query.compile(dialect=dialect).string, binds)

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: values[name] if bind is None else bind(values[name])
            for name, bind in self.binds.items()
        }


@dataclass(frozen=True, slots=True)
class Found:
    """What one trigger read found (as ``lookups.fetch_triggers`` reads it in a thread)."""

    tokens: dict[str, tokens.TokenInfo]
    queued: list[tuple[int, Job, tuple[str, ...] | None]]
    unfinished: list[ledger.Unfinished]
    leases: list[LeaseRow]
    runs: dict[str, ledger.RunRow]


class LoopReads:
    """The trigger read and run queueing of one event loop on PostgreSQL; ``aclose`` when the
    loop's app stops."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._tokens = Statement.compile(
            select(api_tokens).where(
                api_tokens.c.token_hash == any_(bindparam("digests", type_=ARRAY(String)))
            ),
            engine,
        )
        self._queued = Statement.compile(ledger.QUEUED_RUNS, engine)
        self._unfinished = Statement.compile(ledger.UNFINISHED_OF_RUNNING, engine)
        self._leases = Statement.compile(
            select(leases).order_by(leases.c.job, leases.c.location_id), engine
        )
        self._runs = Statement.compile(
            select(runs).where(
                runs.c.idempotency_key == any_(bindparam("keys", type_=ARRAY(String)))
            ),
            engine,
        )
        self._queue = RunInsert.compile(engine)
        self._to_queue: list[tuple[dict[str, Any], Waiter]] = []
        self._queuer: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        # one statement or pipeline at a time on the connection: a failed insert must never
        # abort a pipelined read of other calls, nor a read's failure an insert
        self._turn = asyncio.Lock()

    async def open(self) -> None:
        """Connect now (the app's start), so that the first calls do not wait for it."""
        await self._connection()

    async def tokens(self, secrets: Sequence[str]) -> dict[str, tokens.TokenInfo]:
        """``tokens.verify_tokens`` on the loop."""
        digests = tokens.presented_digests(secrets)
        if not digests:
            return {}
        (rows,) = await self._fetch([(self._tokens, self._tokens.params(digests=list(digests)))])
        return tokens.active_by_secret(rows, digests)

    async def read(self, secrets: Sequence[str], keys: Sequence[str]) -> Found:
        """The active tokens of ``secrets``, the holders (queued runs, running runs' unfinished
        locations, leases), then the runs of ``keys`` (holders before keys: see
        ``lookups.Lookups``), in one round trip."""
        digests = tokens.presented_digests(secrets)
        token_rows, queued_rows, unfinished_rows, lease_rows, run_rows = await self._fetch(
            [
                (self._tokens, self._tokens.params(digests=list(digests))),
                (self._queued, self._queued.params()),
                (self._unfinished, self._unfinished.params()),
                (self._leases, self._leases.params()),
                (self._runs, self._runs.params(keys=list(keys))),
            ]
        )
        return Found(
            tokens=tokens.active_by_secret(token_rows, digests),
            queued=[ledger.queued_scope(row) for row in queued_rows],
            unfinished=[ledger.Unfinished.from_row(row) for row in unfinished_rows],
            leases=[LeaseRow.from_row(cast(RowMapping, row)) for row in lease_rows],
            runs={str(row["idempotency_key"]): ledger.RunRow.from_row(row) for row in run_rows},
        )

    async def queue_run(self, values: Mapping[str, Any]) -> int | None:
        """Insert the queued run ``values`` (``ledger.run_values``) unless a run has its
        idempotency key: the new run's id, or None when the key's run exists. Runs asked while
        an insert is in flight are inserted together next (``_insert``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._to_queue.append((self._queue.params(values), future))
        if self._queuer is None:
            self._queuer = loop.create_task(self._queue_waiting())
        return await future

    async def _queue_waiting(self) -> None:
        try:
            while self._to_queue:
                batch, self._to_queue = self._to_queue, []
                batch.sort(key=_insert_order)
                await self._queue_batch(batch)
        finally:
            self._queuer = None

    async def _queue_batch(self, batch: list[tuple[dict[str, Any], Waiter]]) -> None:
        try:
            await self._answer(batch)
        except BaseException:  # cancelled (the server is stopping): so are the waiters
            for _, future in batch:
                future.cancel()
            raise

    async def _answer(self, batch: list[tuple[dict[str, Any], Waiter]]) -> None:
        """Each waiter of ``batch`` gets its run id, or the error. A batch of several rows
        that failed so that each may get through alone (``_may_pass_alone``) is inserted again,
        one row at a time."""
        try:
            run_ids = await self._insert([params for params, _ in batch])
        except sa_exc.DBAPIError as exc:
            if len(batch) > 1 and _may_pass_alone(exc.orig):
                log.warning(
                    "batched insert failed; one row at a time", error=type(exc.orig).__name__
                )
                for one in batch:
                    await self._answer([one])
                return
            _fail(batch, exc)
            return
        except Exception as exc:  # every waiter gets the failure (503: database down)
            _fail(batch, exc)
            return
        for (_, future), run_id in zip(batch, run_ids, strict=True):
            if not future.done():
                future.set_result(run_id)

    async def _insert(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """One insert per run, sent in one pipeline: one round trip and one implicit
        transaction (a failure queues none of them). Not resent if the connection is lost."""

        async def send(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> list[int | None]:
            async with conn.pipeline():
                cursors = [await conn.execute(self._queue.sql, params) for params in rows]
            found = [await cursor.fetchone() for cursor in cursors]
            return [None if row is None else int(row[0]) for row in found]

        return await self._send(send, resend_if_lost=False)

    async def _fetch(self, asked: Sequence[tuple[Statement, dict[str, Any]]]) -> list[list[Row]]:
        """The rows of each statement, sent in one pipeline (one round trip), in order."""

        async def send(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> list[list[Row]]:
            async with conn.pipeline():
                cursors = [await conn.execute(stmt.sql, params) for stmt, params in asked]
            return [
                stmt.rows(await cursor.fetchall())
                for (stmt, _), cursor in zip(asked, cursors, strict=True)
            ]

        return await self._send(send, resend_if_lost=True)

    async def _send(
        self,
        send: Callable[[psycopg.AsyncConnection[tuple[Any, ...]]], Awaitable[T]],
        *,
        resend_if_lost: bool,
    ) -> T:
        """``send`` on the connection, one at a time; sent once more on a new connection if
        the connection was lost and ``resend_if_lost``. A failure leaves a connection that is
        still well for the next batch."""
        async with self._turn:
            tries = 2 if resend_if_lost else 1
            while True:
                tries -= 1
                conn = await self._connection()
                try:
                    return await send(conn)
                except psycopg.Error as exc:
                    lost = conn.broken
                    if lost or conn.info.transaction_status != TransactionStatus.IDLE:
                        await self.aclose()
                    if not (lost and tries):
                        raise _as_sqlalchemy(exc) from exc
                    log.warning("database connection lost; sending again", error=str(exc)[:200])

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """The open connection, or a new one; one the server has spoken on while it was idle
        (most likely to say it closes it) is pinged first, and replaced if it is gone."""
        if self._conn is not None and not self._conn.closed and _has_unread(self._conn):
            try:
                await self._conn.execute("")
            except psycopg.Error as exc:
                log.warning("database connection closed by the server", error=str(exc)[:200])
                await self.aclose()
        if self._conn is None or self._conn.closed:
            try:
                params = await to_thread.run_sync(_connection_parameters, self._engine)
                self._conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            except psycopg.Error as exc:
                raise _as_sqlalchemy(exc) from exc
        return self._conn


def _connection_parameters(engine: Engine) -> Mapping[str, Any]:
    """The parameters the engine's own connections are made with (its options and timeouts)."""
    with engine.connect() as conn:
        info = conn.connection.dbapi_connection.info  # type: ignore[union-attr]
        params: dict[str, Any] = dict(info.get_parameters())
        if info.password:
            params["password"] = info.password
    return params


def _has_unread(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> bool:
    """Whether the server sent something since the last batch was answered (without waiting;
    ``poll`` rather than ``select``, which refuses descriptors past 1023)."""
    poller = io_select.poll()
    poller.register(conn.fileno(), io_select.POLLIN)
    return bool(poller.poll(0))


def _may_pass_alone(error: BaseException | None) -> bool:
    """Whether each row of a batch that failed so may get through alone: a deadlock or a
    serialization failure with another writer (SQLSTATE class 40, each its own class in psycopg),
    or a row the database refuses (it fails only its caller)."""
    if isinstance(error, psycopg.IntegrityError):
        return True
    return isinstance(error, psycopg.Error) and (error.sqlstate or "").startswith("40")


def _insert_order(queued: tuple[dict[str, Any], Waiter]) -> tuple[bool, str]:
    """Keyed rows first, by key: the unique key is the only lock two inserts can both want."""
    key = queued[0]["idempotency_key"]
    return key is None, key or ""


def _fail(batch: Sequence[tuple[dict[str, Any], Waiter]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _as_sqlalchemy(exc: psycopg.Error) -> sa_exc.DBAPIError:
    """The error SQLAlchemy raises for it (``IntegrityError``, ``OperationalError``…), so that
    the API answers it as on the threaded path (503 when the database cannot be used, else 500)."""
    error = sa_exc.DBAPIError.instance(None, None, exc, psycopg.Error)
    assert isinstance(error, sa_exc.DBAPIError)
    return error
