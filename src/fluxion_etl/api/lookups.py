"""Reads the API shares between concurrent requests: one database round trip per batch.

Under a burst of triggers (callers retrying, scheduler fires on the minute, many callers at once)
every request asks the database the same questions: whose token is this, which run has this
Idempotency-Key, which locations are taken. ``Batched`` gathers the questions asked while its
previous query is in flight and answers them all with the next one (the DataLoader pattern, or
group commit for reads): on PostgreSQL on the event loop itself, in one round trip
(``api.loopreads``); on SQLite in one thread hand-off. A question is always answered by a query
that starts after it was asked, so no answer is older than its request: a token revoked before a
request arrives is refused, and a run created before it is found, as with one query per request.

``SingleFlight`` lets concurrent identical starts in this process wait for the first one instead of
racing it to the database (the database's unique key still decides between processes).

These objects belong to one event loop; ``lookups(services)`` returns the running loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio import to_thread
from sqlalchemy import Connection

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.loopreads import Found, LoopReads
from fluxion_etl.domain.states import Job
from fluxion_etl.store import leases, ledger, tokens
from fluxion_etl.store.leases import LeaseRow
from fluxion_etl.store.ledger import RunRow
from fluxion_etl.store.tokens import TokenInfo

if TYPE_CHECKING:
    from fluxion_etl.api.trigger import TriggerOutcome

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")
Question = tuple[str | None, str | None]  # a trigger call's (bearer secret, idempotency key)

# Keys per query: a bound on the statement's size, far above what one batch gathers in practice.
MAX_BATCH = 500


Fetch = Callable[[Sequence[K]], Awaitable[Mapping[K, V]]]


def in_thread(fetch: Callable[[Sequence[K]], Mapping[K, V]]) -> Fetch[K, V]:
    """A blocking ``fetch`` run in a worker thread."""

    async def threaded(keys: Sequence[K]) -> Mapping[K, V]:
        return await to_thread.run_sync(fetch, keys)

    return threaded


class Batched(Generic[K, V]):
    """``await batched.get(key)``: ``fetch(keys)``'s value for ``key`` (None when absent), with
    the keys of every request waiting at the same moment fetched together."""

    def __init__(self, fetch: Fetch[K, V]) -> None:
        self._fetch = fetch
        # Each caller awaits its own future: one that goes away (a closed connection) cancels
        # only its own, never the others' answer.
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._drainer: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        waiters = self._waiting.get(key)
        if waiters is None:
            self._waiting[key] = [future]
            if self._drainer is None:
                self._drainer = loop.create_task(self._drain())
        else:
            waiters.append(future)
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = dict(list(self._waiting.items())[:MAX_BATCH])
                for key in batch:
                    del self._waiting[key]
                await self._answer(batch)
        finally:
            self._drainer = None

    async def _answer(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except Exception as exc:  # every waiter gets the failure (e.g. 503: database down)
            for waiters in batch.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(exc)
            return
        except BaseException:  # cancelled (the server is stopping): so are the waiters
            for waiters in batch.values():
                for future in waiters:
                    future.cancel()
            raise
        for key, waiters in batch.items():
            value = found.get(key)
            for future in waiters:
                if not future.done():
                    future.set_result(value)


class SingleFlight(Generic[K, T]):
    """``await flight.run(key, start)``: the first caller for ``key`` runs ``start``; callers that
    come while it runs get its result too. Returns (whether this caller ran it, the result)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

    def running(self, key: K) -> bool:
        """Whether a start for ``key`` is under way."""
        return key in self._running

    async def run(self, key: K, start: Callable[[], Awaitable[T]]) -> tuple[bool, T]:
        running = self._running.get(key)
        if running is not None:
            return False, await asyncio.shield(running)
        result: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = result
        try:
            value = await start()
        except Exception as exc:
            result.set_exception(exc)
            result.exception()  # retrieved: no warning when nobody was waiting
            raise
        except BaseException:
            result.cancel()
            raise
        finally:
            del self._running[key]
        result.set_result(value)
        return True, value


@dataclass(frozen=True, slots=True)
class Holders:
    """Who holds which locations, read together: the leases, the queued runs (each takes its
    locations' leases when it starts) and the locations running runs have not finished yet
    (a run between two locations, or between its claim and its first lease, holds no lease)."""

    leases: list[LeaseRow]
    queued: list[tuple[int, Job, tuple[str, ...] | None]]
    unfinished: list[ledger.Unfinished]

    @classmethod
    def read(cls, conn: Connection) -> Holders:
        # In the order runs move through them: a run that moves between two reads is seen in
        # one list or both (claiming creates the unfinished items in the same transaction).
        queued = ledger.queued_scopes(conn)
        unfinished = ledger.unfinished_of_running(conn)
        return cls(leases.list_leases(conn), queued, unfinished)


@dataclass(frozen=True, slots=True)
class TriggerReads:
    """What a trigger call reads, in one round trip: its caller's token (None: unknown, revoked,
    or not asked), the run of its key (None: none yet, or no key), and the holders."""

    token: TokenInfo | None
    run: RunRow | None
    holders: Holders


class Lookups:
    """The shared reads of one service on one event loop; ``aclose`` when its app stops."""

    def __init__(self, services: ServiceContext) -> None:
        engine = services.read_engine

        def fetch_tokens(secrets: Sequence[str]) -> Mapping[str, TokenInfo]:
            with engine.connect() as conn:
                return tokens.verify_tokens(conn, secrets)

        def read_in_thread(secrets: Sequence[str], keys: Sequence[str]) -> Found:
            with engine.connect() as conn:
                found_tokens = tokens.verify_tokens(conn, secrets)
                # holders first: on PostgreSQL each statement has its own snapshot, and a run
                # seen holding a location must then be seen by the key lookup too
                held = Holders.read(conn)
                return Found(
                    found_tokens,
                    held.queued,
                    held.unfinished,
                    held.leases,
                    ledger.runs_for_keys(conn, keys),
                )

        self._loop_reads = LoopReads(engine) if engine.dialect.name == "postgresql" else None

        async def fetch_triggers(asked: Sequence[Question]) -> Mapping[Question, TriggerReads]:
            secrets = list({secret for secret, _ in asked if secret is not None})
            keys = list({key for _, key in asked if key is not None})
            if self._loop_reads is not None:
                found = await self._loop_reads.read(secrets, keys)
            else:
                found = await to_thread.run_sync(read_in_thread, secrets, keys)
            held = Holders(found.leases, found.queued, found.unfinished)
            return {
                (secret, key): TriggerReads(
                    None if secret is None else found.tokens.get(secret),
                    None if key is None else found.runs.get(key),
                    held,
                )
                for secret, key in asked
            }

        async def fetch_tokens_on_loop(secrets: Sequence[str]) -> Mapping[str, TokenInfo]:
            assert self._loop_reads is not None
            return await self._loop_reads.tokens(secrets)

        on_loop = self._loop_reads is not None
        self._tokens = Batched(fetch_tokens_on_loop if on_loop else in_thread(fetch_tokens))
        self._triggers = Batched(fetch_triggers)
        self.starts: SingleFlight[Hashable, TriggerOutcome] = SingleFlight()
        self._touched: dict[int, datetime] = {}

    async def open(self) -> None:
        """Open what the first calls would otherwise wait for (PostgreSQL: the loop's
        connection; the statements are compiled when this is made)."""
        if self._loop_reads is not None:
            await self._loop_reads.open()

    async def aclose(self) -> None:
        if self._loop_reads is not None:
            await self._loop_reads.aclose()

    @property
    def queues_on_loop(self) -> bool:
        """Whether ``queue_run`` is available: runs are queued on the event loop (PostgreSQL)."""
        return self._loop_reads is not None

    async def queue_run(self, values: Mapping[str, Any]) -> int | None:
        """``ledger.create_run``'s insert on the loop (``api.loopreads``): the new run's id, or
        None when a run has its idempotency key. PostgreSQL only (``queues_on_loop``)."""
        assert self._loop_reads is not None
        return await self._loop_reads.queue_run(values)

    async def token(self, secret: str) -> TokenInfo | None:
        return await self._tokens.get(secret)

    async def trigger_reads(self, secret: str | None, key: str | None) -> TriggerReads:
        """The token of ``secret`` (if given), the run of idempotency key ``key`` (if given) and
        the holders, read with every other trigger call waiting at the same moment."""
        reads = await self._triggers.get((secret, key))
        assert reads is not None
        return reads

    def should_touch(self, info: TokenInfo, now: datetime) -> bool:
        """``tokens.needs_touch``, once per token and resolution in this process (a burst of
        requests with one token writes its last use once, not once per request)."""
        touched = self._touched.get(info.id)
        if touched is not None and now - touched < tokens.LAST_USED_RESOLUTION:
            return False
        if not tokens.needs_touch(info, now):
            return False
        self._touched[info.id] = now
        return True


def lookups(services: ServiceContext) -> Lookups:
    """The running event loop's ``Lookups`` for ``services`` (made on first use)."""
    loop = asyncio.get_running_loop()
    found = services.loop_state.get(loop)
    if not isinstance(found, Lookups):
        found = services.loop_state[loop] = Lookups(services)
    return found


async def open_lookups(services: ServiceContext) -> None:
    """Make the running loop's ``Lookups`` for ``services`` and open it (the app's start)."""
    await lookups(services).open()


async def close_lookups(services: ServiceContext) -> None:
    """Close the running loop's ``Lookups`` for ``services``, if it made one (the app's end)."""
    found = services.loop_state.pop(asyncio.get_running_loop(), None)
    if isinstance(found, Lookups):
        await found.aclose()
