"""On PostgreSQL an API call queues its run on the event loop (``api.loopreads``) and hands it to a
launcher that needs no I/O for it there: the row is the one ``ledger.create_run`` writes, a key's
run is never made twice, a failed hand-off still fails the run, and the app opens the loop's
connection when it starts (a database down then does not stop it from starting). Against another
writer a batch takes its keys in order, and a batch that fails all the same answers each caller
alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from api_support import NOW, FakeLauncher, make_services, make_tokens
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text
from sqlalchemy import exc as sa_exc

from fluxion_etl.api.app import create_app
from fluxion_etl.api.loopreads import LoopReads, RunInsert
from fluxion_etl.api.trigger import api_key
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ErrorCategory, Job, RunStatus, Trigger
from fluxion_etl.store import ledger, tokens
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.schema import runs

REQUESTS = [
    RunRequest(job=Job.INVENTORY, trigger=Trigger.API, locations=("tienda_01",),
               requested_by="trigger", idempotency_key="K"),
    RunRequest(job=Job.SALES, trigger=Trigger.API, locations=None, requested_by="trigger",
               date_from=date(2026, 1, 1), date_to=date(2026, 1, 3), idempotency_key="K"),
    RunRequest(job=Job.RECONCILE, trigger=Trigger.API, locations=("tienda_01", "tienda_02"),
               requested_by=None, params={"days": 3}, idempotency_key="K"),
    RunRequest(job=Job.INVENTORY, trigger=Trigger.API, locations=None, requested_by="trigger"),
    RunRequest(job=Job.INVENTORY, trigger=Trigger.API, schedule_name="inventory",
               scheduled_for=NOW - timedelta(minutes=1), idempotency_key="K"),
]  # fmt: skip


def _postgres(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("runs are queued on the loop on PostgreSQL")


def _with_key(request: RunRequest, key: str) -> RunRequest:
    if request.idempotency_key is None:
        return request
    return replace(request, idempotency_key=key)


def _stored(engine: Engine, run_id: int) -> dict[str, Any]:
    """The row as stored, JSON as text (SQL NULL and JSON null differ), without id and key."""
    with engine.connect() as conn:
        row = dict(conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one())
        raw = conn.execute(
            text("SELECT scope::text, params::text FROM runs WHERE id = :id"), {"id": run_id}
        ).one()
    del row["id"], row["idempotency_key"]
    return {**row, "scope": raw[0], "params": raw[1]}


def test_a_run_queued_on_the_loop_is_the_row_create_run_writes(engine: Engine) -> None:
    _postgres(engine)
    requests = list(enumerate(REQUESTS))

    async def on_loop() -> list[int | None]:
        reads = LoopReads(engine)
        try:
            return [
                await reads.queue_run(
                    ledger.run_values(_with_key(request, f"loop-{i}"), now=NOW, launcher="inline")
                )
                for i, request in requests
            ]
        finally:
            await reads.aclose()

    queued = asyncio.run(on_loop())
    with engine.begin() as conn:
        created = [
            ledger.create_run(conn, _with_key(request, f"thread-{i}"), now=NOW, launcher="inline")
            for i, request in requests
        ]

    assert set(ledger.run_values(REQUESTS[0], now=NOW, launcher=None)) == set(
        ledger.QUEUED_RUN_COLUMNS
    )
    assert all(run_id is not None for run_id in queued)
    for run_id, result in zip(queued, created, strict=True):
        assert run_id is not None
        assert _stored(engine, run_id) == _stored(engine, result.run_id)
    with engine.connect() as conn:
        loop_run = ledger.get_run(conn, queued[2] or 0)
    assert loop_run is not None
    assert loop_run.status is RunStatus.QUEUED
    assert (loop_run.scope, loop_run.params) == (("tienda_01", "tienda_02"), {"days": 3})


def test_queueing_a_key_whose_run_exists_makes_no_second_run(engine: Engine) -> None:
    _postgres(engine)
    values = ledger.run_values(REQUESTS[0], now=NOW, launcher="inline")

    async def twice() -> tuple[int | None, int | None]:
        reads = LoopReads(engine)
        try:
            return await reads.queue_run(values), await reads.queue_run(values)
        finally:
            await reads.aclose()

    first, second = asyncio.run(twice())

    assert first is not None
    assert second is None
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.id)).scalars().all() == [first]


def test_runs_queued_at_the_same_moment_each_get_their_own_answer(engine: Engine) -> None:
    """Concurrent calls' inserts go together (one pipeline); each caller gets its own run id,
    a key asked twice gets one run and None, a run without a key is always made."""
    _postgres(engine)
    keys = ["K-0", "K-1", "K-0", None, None, "K-2"]

    def values(key: str | None) -> dict[str, Any]:
        request = replace(REQUESTS[0], idempotency_key=key)
        return ledger.run_values(request, now=NOW, launcher="inline")

    async def together() -> list[int | None]:
        reads = LoopReads(engine)
        try:
            await reads.queue_run(values("K-2"))  # made before: its key is taken
            return list(await asyncio.gather(*(reads.queue_run(values(key)) for key in keys)))
        finally:
            await reads.aclose()

    queued = asyncio.run(together())

    assert [run_id is None for run_id in queued] == [False, False, True, False, False, True]
    with engine.connect() as conn:
        stored = dict(conn.execute(select(runs.c.id, runs.c.idempotency_key)).all())
    assert len(stored) == 1 + 4
    assert [stored[run_id] for run_id in queued if run_id is not None] == ["K-0", "K-1", None, None]


@pytest.mark.parametrize("in_process", [True, False], ids=["on the loop", "in a thread"])
def test_a_failed_hand_off_answers_503_and_fails_the_run(engine: Engine, in_process: bool) -> None:
    launcher = FakeLauncher(fail_with="no capacity", hands_off_in_process=in_process)
    services = make_services(engine, ManualClock(NOW), launcher)
    auth = {"Authorization": f"Bearer {make_tokens(engine, NOW)['trigger']}"}
    app = create_app(services.settings, services=services)
    with TestClient(app) as client:
        answer = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_01"}, headers=auth)

    assert answer.status_code == 503, answer.text
    with engine.connect() as conn:
        run = ledger.get_run(conn, answer.json()["run_id"])
    assert run is not None
    assert (run.status, run.error_category) == (RunStatus.FAILED, ErrorCategory.LAUNCH)
    assert "no capacity" in (run.error_message or "")


@pytest.mark.parametrize("in_process", [True, False], ids=["on the loop", "in a thread"])
def test_a_key_called_again_gets_its_run_on_either_hand_off(
    engine: Engine, in_process: bool
) -> None:
    launcher = FakeLauncher(hands_off_in_process=in_process)
    services = make_services(engine, ManualClock(NOW), launcher)
    headers = {
        "Authorization": f"Bearer {make_tokens(engine, NOW)['trigger']}",
        "Idempotency-Key": "K-1",
    }
    app = create_app(services.settings, services=services)
    with TestClient(app) as client:
        first = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_01"}, headers=headers)
        again = client.post("/api/etl/sync", json={"ubicacion_id": "tienda_01"}, headers=headers)

    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    assert launcher.launched == [first.json()["run_id"]]
    with engine.connect() as conn:
        run = ledger.run_for_key(conn, api_key("K-1"))
    assert run is not None
    assert (run.id, run.launcher, run.requested_by) == (first.json()["run_id"], "fake", "trigger")


def test_the_app_connects_its_loop_when_it_starts(engine: Engine) -> None:
    _postgres(engine)
    services = make_services(engine, ManualClock(NOW), FakeLauncher())
    app = create_app(services.settings, services=services)
    engine.dispose()
    mine = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'fluxion-etl' AND pid <> pg_backend_pid()"
    )
    observer = create_db_engine(engine.url.render_as_string(hide_password=False))
    try:
        with observer.connect() as conn:
            before = conn.execute(mine).scalar_one()
        with TestClient(app), observer.connect() as conn:  # no call made
            started = conn.execute(mine).scalar_one()
    finally:
        observer.dispose()

    assert before == 0
    assert started >= 1


def test_the_app_starts_while_the_database_is_down_and_answers_503() -> None:
    # nothing listens on the discard port
    down = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:9/fluxion", pool_size=1)
    services = make_services(down, ManualClock(NOW), FakeLauncher())
    app = create_app(services.settings, services=services)
    with TestClient(app) as client:
        health = client.get("/healthz")
        answer = client.post(
            "/api/etl/sync",
            json={"ubicacion_id": "tienda_01"},
            headers={"Authorization": f"Bearer {tokens.new_secret()}"},
        )
    down.dispose()

    assert health.status_code == 200
    assert answer.status_code == 503, answer.text


# --- batches against another writer ----------------------------------------------------------


def _values(key: str | None) -> dict[str, Any]:
    request = replace(REQUESTS[0], idempotency_key=key)
    return ledger.run_values(request, now=NOW, launcher="inline")


class OtherWriter:
    """Another process inserting runs in one open transaction, in the order it likes."""

    def __init__(self, engine: Engine, conn: psycopg.AsyncConnection[Any]) -> None:
        self._insert = RunInsert.compile(engine)
        self.conn = conn

    @classmethod
    async def connect(cls, engine: Engine, *settings: str) -> OtherWriter:
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await psycopg.AsyncConnection.connect(url)
        for setting in settings:
            await conn.execute(setting)
        return cls(engine, conn)

    async def insert(self, key: str) -> None:
        await self.conn.execute(self._insert.sql, self._insert.params(_values(key)))


async def _until_a_batch_waits(engine: Engine) -> None:
    """Until a connection of ours waits for a lock: the batch waits for the other's key."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND application_name = 'fluxion-etl' AND datname = current_database()"
    )
    for _ in range(500):
        with engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never waited for the other writer's key")


def test_a_batch_takes_its_keys_in_order_so_a_writer_in_that_order_never_deadlocks_it(
    engine: Engine,
) -> None:
    """Two serve processes' batches insert their keys in one order: the later one waits for
    the earlier one's keys, never the two for each other. Asked K-2 then K-1, the batch inserts
    K-1 first; the other writer, holding K-1, then inserts K-2 without waiting (were K-2 taken
    first, it would wait for the batch, and the batch for it: a deadlock)."""
    _postgres(engine)

    async def race() -> list[int | None]:
        reads = LoopReads(engine)
        other = await OtherWriter.connect(engine, "SET lock_timeout = '500ms'")
        try:
            await other.insert("K-1")
            batch = asyncio.gather(reads.queue_run(_values("K-2")), reads.queue_run(_values("K-1")))
            await _until_a_batch_waits(engine)
            await other.insert("K-2")  # a deadlock, or this lock's timeout, if K-2 were taken
            await other.conn.commit()
            return list(await batch)
        finally:
            await other.conn.close()
            await reads.aclose()

    assert asyncio.run(race()) == [None, None]  # the other writer's runs: each key has one


def test_each_caller_of_a_batch_that_deadlocked_with_another_writer_gets_its_own_answer(
    engine: Engine,
) -> None:
    """A writer that takes keys in another order (an older release during a deploy) deadlocks
    with a batch, and PostgreSQL cancels the batch: its rows are inserted again one at a time,
    so each caller gets the answer it would have had alone (a key's existing run: None, as
    ``ledger.create_run`` finds it; a run without a key: made), not a 503."""
    _postgres(engine)

    async def race() -> list[int | None]:
        reads = LoopReads(engine)
        # the batch is the one PostgreSQL cancels: it checks for a deadlock first (after 1 s)
        other = await OtherWriter.connect(engine, "SET deadlock_timeout = '30s'")
        try:
            await other.insert("K-2")
            batch = asyncio.gather(*(reads.queue_run(_values(k)) for k in ("K-1", "K-2", None)))
            await _until_a_batch_waits(engine)  # K-1 inserted, waits for K-2
            await other.insert("K-1")  # waits for the batch: a deadlock, until it is cancelled
            await other.conn.commit()
            return list(await batch)
        finally:
            await other.conn.close()
            await reads.aclose()

    first, second, unkeyed = asyncio.run(race())

    assert (first, second) == (None, None)
    assert unkeyed is not None
    with engine.connect() as conn:
        keys = conn.execute(select(runs.c.idempotency_key).order_by(runs.c.id)).scalars().all()
    assert sorted(keys, key=str) == ["K-1", "K-2", None]


def test_a_row_the_database_refuses_fails_its_caller_alone_with_the_error_of_create_run(
    engine: Engine,
) -> None:
    """The refused row's caller gets ``IntegrityError``, as the threaded path's insert raises
    (and the API answers both alike); the other rows of its batch are queued."""
    _postgres(engine)
    refused = _values("K-bad") | {"job": None}

    async def together() -> list[int | BaseException | None]:
        reads = LoopReads(engine)
        try:
            asked = (reads.queue_run(refused), reads.queue_run(_values("K-ok")))
            return list(await asyncio.gather(*asked, return_exceptions=True))
        finally:
            await reads.aclose()

    failed, queued = asyncio.run(together())

    assert isinstance(failed, sa_exc.IntegrityError), failed
    assert isinstance(queued, int)
    with engine.begin() as conn, pytest.raises(sa_exc.IntegrityError):
        conn.execute(insert(runs).values(refused))
