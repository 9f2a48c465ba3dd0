"""Reads the API shares between concurrent requests: one database round trip per batch.

Under a burst of triggers (callers retrying, scheduler fires on the minute, many callers at once)
every request asks the database the same questions: whose token is this, which run has this
Idempotency-Key, which locations are taken. ``Batched`` gathers the questions asked while its
previous query is in flight and answers them all with the next one, in one thread hand-off (the
DataLoader pattern, or group commit for reads). A question is always answered by a query that
starts after it was asked, so no answer is older than its request: a token revoked before a request
arrives is refused, and a run created before it is found, as with one query per request.

``SingleFlight`` lets concurrent identical starts in this process wait for the first one instead of
racing it to the database (the database's unique key still decides between processes).

These objects belong to one event loop; ``lookups(services)`` returns the running loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from anyio import to_thread
from sqlalchemy import Connection

from fluxion_etl.api.context import ServiceContext
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


class Batched(Generic[K, V]):
    """``await batched.get(key)``: ``fetch(keys)``'s value for ``key`` (None when absent), with
    the keys of every request waiting at the same moment fetched together."""

    def __init__(self, fetch: Callable[[Sequence[K]], Mapping[K, V]]) -> None:
        self._fetch = fetch
        self._waiting: dict[K, asyncio.Future[V | None]] = {}
        self._drainer: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        future = self._waiting.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            if self._drainer is None:
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
        # A caller that goes away (a closed connection) must not cancel the others' answer.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = dict(list(self._waiting.items())[:MAX_BATCH])
                for key in batch:
                    del self._waiting[key]
                await self._answer(batch)
        finally:
            self._drainer = None

    async def _answer(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await to_thread.run_sync(self._fetch, list(batch))
        except Exception as exc:  # every waiter gets the failure (e.g. 503: database down)
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the server is stopping): so are the waiters
            for future in batch.values():
                future.cancel()
            raise
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))


class SingleFlight(Generic[K, T]):
    """``await flight.run(key, start)``: the first caller for ``key`` runs ``start``; callers that
    come while it runs get its result too. Returns (whether this caller ran it, the result)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

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
    """Who holds which locations, read together: the leases, and the queued runs (each takes its
    locations' leases when it starts)."""

    leases: list[LeaseRow]
    queued: list[tuple[int, Job, tuple[str, ...] | None]]

    @classmethod
    def read(cls, conn: Connection) -> Holders:
        # queued runs first: a run that starts between the two reads is then in one list or both
        queued = ledger.queued_scopes(conn)
        return cls(leases.list_leases(conn), queued)


@dataclass(frozen=True, slots=True)
class TriggerReads:
    """What a trigger call reads, in one round trip: its caller's token (None: unknown, revoked,
    or not asked), the run of its key (None: none yet, or no key), and the holders."""

    token: TokenInfo | None
    run: RunRow | None
    holders: Holders


class Lookups:
    """The shared reads of one service on one event loop."""

    def __init__(self, services: ServiceContext) -> None:
        engine = services.read_engine

        def fetch_tokens(secrets: Sequence[str]) -> Mapping[str, TokenInfo]:
            with engine.connect() as conn:
                return tokens.verify_tokens(conn, secrets)

        def fetch_triggers(asked: Sequence[Question]) -> Mapping[Question, TriggerReads]:
            secrets = list({secret for secret, _ in asked if secret is not None})
            keys = list({key for _, key in asked if key is not None})
            with engine.connect() as conn:
                found_tokens = tokens.verify_tokens(conn, secrets)
                # holders first: on PostgreSQL each statement has its own snapshot, and a run
                # seen holding a location must then be seen by the key lookup too
                held = Holders.read(conn)
                runs = ledger.runs_for_keys(conn, keys)
            return {
                (secret, key): TriggerReads(
                    None if secret is None else found_tokens.get(secret),
                    None if key is None else runs.get(key),
                    held,
                )
                for secret, key in asked
            }

        self._tokens = Batched(fetch_tokens)
        self._triggers = Batched(fetch_triggers)
        self.starts: SingleFlight[Hashable, TriggerOutcome] = SingleFlight()
        self._touched: dict[int, datetime] = {}

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
