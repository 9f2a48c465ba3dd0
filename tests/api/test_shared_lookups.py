"""The trigger path's shared reads (``api.lookups``): concurrent questions share one query, every
answer comes from a query that started after the question, failures reach every waiter; concurrent
identical starts make one run."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from api_support import NOW, FakeLauncher, make_services, make_tokens
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, select, text

from fluxion_etl.api.app import create_app
from fluxion_etl.api.lookups import Batched, Holders, SingleFlight, in_thread
from fluxion_etl.api.loopreads import Found, LoopReads
from fluxion_etl.api.trigger import api_key
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.store import leases, ledger, tokens
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.schema import runs

CALLERS = 40


class Recorder:
    """A fetch that records each batch it is asked, optionally held until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.batches.append(list(keys))
        self.started.set()
        assert self.release.wait(10)
        return {key: key.upper() for key in keys if key != "absent"}


def test_questions_asked_together_share_one_fetch() -> None:
    fetch = Recorder()

    async def ask() -> list[str | None]:
        batched = Batched(in_thread(fetch))
        return await asyncio.gather(*(batched.get(key) for key in ("a", "b", "a", "absent")))

    assert asyncio.run(ask()) == ["A", "B", "A", None]
    assert fetch.batches == [["a", "b", "absent"]]


def test_a_question_asked_while_a_fetch_runs_waits_for_the_next_fetch() -> None:
    """An answer is never older than its question: the running fetch may predate it."""
    fetch = Recorder()
    fetch.release.clear()

    async def ask() -> tuple[str | None, str | None]:
        batched = Batched(in_thread(fetch))
        first = asyncio.create_task(batched.get("a"))
        while not fetch.started.is_set():
            await asyncio.sleep(0.001)
        second = asyncio.create_task(batched.get("a"))
        await asyncio.sleep(0.01)
        fetch.release.set()
        return await first, await second

    assert asyncio.run(ask()) == ("A", "A")
    assert fetch.batches == [["a"], ["a"]]


def test_a_failed_fetch_fails_every_waiter_and_the_next_question_is_asked_again() -> None:
    calls: list[list[str]] = []

    def fetch(keys: Sequence[str]) -> Mapping[str, str]:
        calls.append(list(keys))
        if len(calls) == 1:
            raise ConnectionError("database down")
        return dict.fromkeys(keys, "ok")

    async def ask() -> tuple[list[object], str | None]:
        batched = Batched(in_thread(fetch))
        failed = await asyncio.gather(batched.get("a"), batched.get("b"), return_exceptions=True)
        return failed, await batched.get("a")

    failed, later = asyncio.run(ask())
    assert [type(error) for error in failed] == [ConnectionError, ConnectionError]
    assert later == "ok"


def test_a_waiter_that_goes_away_does_not_cancel_the_others() -> None:
    fetch = Recorder()
    fetch.release.clear()

    async def ask() -> str | None:
        batched = Batched(in_thread(fetch))
        leaving = asyncio.create_task(batched.get("a"))
        staying = asyncio.create_task(batched.get("a"))
        while not fetch.started.is_set():
            await asyncio.sleep(0.001)
        leaving.cancel()
        fetch.release.set()
        return await staying

    assert asyncio.run(ask()) == "A"


def test_single_flight_runs_once_for_concurrent_callers_and_shares_the_result() -> None:
    started = 0

    async def start() -> int:
        nonlocal started
        started += 1
        await asyncio.sleep(0.01)
        return 7

    async def run() -> list[tuple[bool, int]]:
        flight: SingleFlight[str, int] = SingleFlight()
        return await asyncio.gather(*(flight.run("k", start) for _ in range(5)))

    results = asyncio.run(run())
    assert started == 1
    assert sorted(results) == [(False, 7)] * 4 + [(True, 7)]


def test_single_flight_gives_the_first_failure_to_every_caller_then_runs_again() -> None:
    attempts = 0

    async def start() -> int:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("launch failed")
        return attempts

    async def run() -> tuple[list[object], tuple[bool, int]]:
        flight: SingleFlight[str, int] = SingleFlight()
        failed = await asyncio.gather(
            *(flight.run("k", start) for _ in range(3)), return_exceptions=True
        )
        return failed, await flight.run("k", start)

    failed, again = asyncio.run(run())
    assert [type(error) for error in failed] == [RuntimeError] * 3
    assert again == (True, 2)


def _burst(base: str, headers: dict[str, str], body: object) -> list[httpx.Response]:
    start = threading.Barrier(CALLERS)

    def trigger() -> httpx.Response:
        with httpx.Client(base_url=base, timeout=60) as client:
            start.wait()
            return client.post("/api/etl/sync", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        return list(pool.map(lambda _: trigger(), range(CALLERS)))


def test_concurrent_calls_without_a_key_for_one_location_start_one_run(
    served: tuple[str, str, FakeLauncher], engine: Engine
) -> None:
    base, token, launcher = served

    answers = _burst(base, {"Authorization": f"Bearer {token}"}, {"ubicacion_id": "tienda_02"})

    codes = Counter(a.status_code for a in answers)
    assert codes == {202: 1, 409: CALLERS - 1}, [a.text for a in answers if a.status_code >= 500]
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert all(a.json()["status"] == "busy" for a in answers if a.status_code == 409)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 1
    assert len(launcher.launched) == 1


def test_concurrent_calls_with_a_revoked_or_unknown_token_are_all_refused(
    served: tuple[str, str, FakeLauncher], engine: Engine
) -> None:
    base, _, _ = served
    with engine.begin() as conn:
        revoked = tokens.create_token(conn, name="gone", scope=tokens.Scope.TRIGGER, now=NOW)
        assert tokens.revoke_token(conn, "gone", now=NOW)

    for secret in (revoked.secret, tokens.new_secret()):
        answers = _burst(base, {"Authorization": f"Bearer {secret}"}, {"ubicacion_id": None})

        assert Counter(a.status_code for a in answers) == {401: CALLERS}
        assert all("unknown or revoked" in a.json()["message"] for a in answers)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "routes"])
def test_a_key_whose_run_another_process_commits_meanwhile_gets_that_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """Another API process commits the run for the same key between this call's reads (on
    PostgreSQL each statement sees its own snapshot): the answer is that run (200), never a 409
    naming it."""
    clock = ManualClock(NOW)
    services = make_services(engine, clock, FakeLauncher())
    secret = make_tokens(engine, NOW)["trigger"]
    other = create_db_engine(engine.url.render_as_string(hide_password=False))
    calls: list[list[str]] = []

    def after_read(keys: Sequence[str]) -> None:
        calls.append(list(keys))
        if len(calls) == 2:  # the start's fresh read: the other process commits now
            request = RunRequest(
                job=Job.INVENTORY,
                trigger=Trigger.API,
                locations=("tienda_01",),
                requested_by="trigger",
                idempotency_key=api_key("K-1"),
            )
            submit(
                other,
                request,
                config=services.config,
                settings=services.settings,
                clock=clock,
                launcher="other",
            )

    # the key is read by ``ledger.runs_for_keys`` in a thread (SQLite), or on the loop (PostgreSQL)
    in_thread, on_loop = ledger.runs_for_keys, LoopReads.read

    def racing(conn: Connection, keys: Sequence[str]) -> dict[str, ledger.RunRow]:
        found = in_thread(conn, keys)
        after_read(keys)
        return found

    async def racing_on_loop(self: LoopReads, secrets: Sequence[str], keys: Sequence[str]) -> Found:
        found = await on_loop(self, secrets, keys)
        after_read(keys)
        return found

    monkeypatch.setattr(ledger, "runs_for_keys", racing)
    monkeypatch.setattr(LoopReads, "read", racing_on_loop)
    app = create_app(services.settings, services=services, fast_triggers=fast)
    try:
        with TestClient(app) as client:
            answer = client.post(
                "/api/etl/sync",
                json={"ubicacion_id": "tienda_01"},
                headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "K-1"},
            )
    finally:
        other.dispose()

    assert len(calls) >= 2, calls
    assert answer.status_code == 200, answer.text
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.id)).scalars().all() == [answer.json()["run_id"]]


def test_the_read_on_the_event_loop_finds_what_the_read_in_a_thread_finds(engine: Engine) -> None:
    """PostgreSQL's trigger read on the loop (``api.loopreads``) and the threaded one return
    the same records: tokens (a revoked one refused), queued runs, leases and runs by key."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the read on the loop is PostgreSQL's")
    services = make_services(engine, ManualClock(NOW), FakeLauncher())
    secrets = make_tokens(engine, NOW)
    for location, key in (("tienda_01", "K-1"), (None, "K-2"), ("tienda_02", None)):
        request = RunRequest(
            job=Job.INVENTORY,
            trigger=Trigger.API,
            locations=None if location is None else (location,),
            requested_by="trigger",
            idempotency_key=None if key is None else api_key(key),
        )
        submit(engine, request, config=services.config, settings=services.settings,
               clock=services.clock)  # fmt: skip
    with engine.begin() as conn:
        gone = tokens.create_token(conn, name="gone", scope=tokens.Scope.TRIGGER, now=NOW)
        tokens.revoke_token(conn, "gone", now=NOW)
        leases.try_acquire(conn, job="inventory", location_id="tienda_03", run_id=1,
                           owner="test", now=NOW, ttl=timedelta(minutes=5))  # fmt: skip
        # The chain-wide run is running: it has finished tienda_04, not tienda_05 or tienda_06.
        chain_run = ledger.run_for_key(conn, api_key("K-2"))
        assert chain_run is not None
        deadline = NOW + timedelta(hours=1)
        ledger.claim_run(conn, chain_run.id, owner="test", now=NOW, deadline_at=deadline)
        ledger.create_items(conn, chain_run.id, ["tienda_04", "tienda_05", "tienda_06"])
        ledger.start_item(conn, chain_run.id, "tienda_05", now=NOW)
        ledger.finish_item(conn, chain_run.id, "tienda_04", ItemStatus.SUCCEEDED, now=NOW)
    asked = [*secrets.values(), gone.secret, tokens.new_secret(), "not-a-token"]
    keys = [api_key("K-1"), api_key("K-2"), api_key("K-3")]

    async def on_loop() -> Found:
        reads = LoopReads(engine)
        try:
            return await reads.read(asked, keys)
        finally:
            await reads.aclose()

    found = asyncio.run(on_loop())
    with engine.connect() as conn:
        held = Holders.read(conn)
        assert found == Found(
            tokens.verify_tokens(conn, asked), held.queued, held.unfinished, held.leases,
            ledger.runs_for_keys(conn, keys),
        )  # fmt: skip
    assert set(found.tokens) == set(secrets.values())
    assert sorted(found.runs) == keys[:2]
    assert len(found.queued) == 2
    assert sorted((u.run_id, u.location_id, u.alive_at) for u in found.unfinished) == [
        (chain_run.id, "tienda_05", NOW),
        (chain_run.id, "tienda_06", NOW),
    ]
    assert [lease.location_id for lease in found.leases] == ["tienda_03"]


def _drop_our_connections(engine: Engine) -> None:
    """The server ends every other connection of ours, as a restart or an idle timeout does."""
    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'fluxion-etl' AND pid <> pg_backend_pid() "
                "AND datname = current_database()"
            )
        )


def test_the_first_call_after_the_server_dropped_the_loops_connection_succeeds(
    engine: Engine,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the read on the loop is PostgreSQL's")
    services = make_services(engine, ManualClock(NOW), FakeLauncher())
    auth = {"Authorization": f"Bearer {make_tokens(engine, NOW)['trigger']}"}
    app = create_app(services.settings, services=services)
    with TestClient(app) as client:
        first = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_01"}, headers=auth)
        _drop_our_connections(engine)
        after = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_02"}, headers=auth)
        again = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_02"}, headers=auth)

    assert first.status_code == 202, first.text
    assert after.status_code == 202, after.text  # read and queued on a new connection
    assert again.status_code == 409, again.text  # and that run holds its location


def test_a_read_whose_connection_is_lost_on_the_way_is_sent_again_on_a_new_one(
    engine: Engine,
) -> None:
    """The connection was well when the read was sent, and is ended while the read waits (for
    a lock here): the read is answered from a new connection, not failed."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the read on the loop is PostgreSQL's")
    keys = [api_key("K-1")]
    with engine.begin() as conn:
        ledger.create_run(
            conn,
            RunRequest(job=Job.INVENTORY, trigger=Trigger.API, idempotency_key=keys[0]),
            now=NOW,
        )

    async def read_while_dropped() -> Found:
        reads = LoopReads(engine)
        await reads.open()
        try:
            with engine.connect() as holder:  # a lock the read waits for
                holder.execute(text("LOCK TABLE leases IN ACCESS EXCLUSIVE MODE"))
                reading = asyncio.create_task(reads.read([], keys))
                while not _end_the_lock_waiters(engine):
                    await asyncio.sleep(0.01)
            return await reading
        finally:
            await reads.aclose()

    found = asyncio.run(read_while_dropped())
    assert list(found.runs) == keys


def _end_the_lock_waiters(engine: Engine) -> int:
    """End the connections waiting for a lock (as a restart would): how many there were."""
    with engine.connect() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).all()
        )
