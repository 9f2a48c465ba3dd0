"""Leases on both dialects: one run per (job, location), expiry, takeover races and reaping."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ErrorCategory, ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.store import leases, ledger

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
TTL = timedelta(seconds=120)


def new_run(engine: Engine, owner: str = "host:1:a", *, now: datetime = T0) -> int:
    """A running sales run claimed by ``owner`` at ``now``, deadline 25 minutes later."""
    with engine.begin() as conn:
        run_id = ledger.create_run(
            conn, RunRequest(job=Job.SALES, trigger=Trigger.API), now=now
        ).run_id
        ledger.claim_run(
            conn, run_id, owner=owner, now=now, deadline_at=now + timedelta(minutes=25)
        )
    return run_id


def acquire(
    engine: Engine, run_id: int, *, owner: str = "host:1:a", now: datetime = T0, loc: str = "t1"
) -> leases.Acquisition:
    with engine.begin() as conn:
        return leases.try_acquire(
            conn, job="sales", location_id=loc, run_id=run_id, owner=owner, now=now, ttl=TTL
        )


def test_a_free_location_is_acquired_and_a_held_one_is_busy(engine: Engine) -> None:
    first, second = new_run(engine, "a"), new_run(engine, "b")
    got = acquire(engine, first, owner="a")
    busy = acquire(engine, second, owner="b", now=T0 + timedelta(seconds=119))
    assert got.acquired
    assert got.holder is not None
    assert (got.holder.run_id, got.holder.expires_at) == (first, T0 + TTL)
    assert got.took_over_from is None
    assert not busy.acquired
    assert busy.holder is not None
    assert (busy.holder.run_id, busy.holder.owner) == (first, "a")


def test_leases_of_other_jobs_and_locations_do_not_conflict(engine: Engine) -> None:
    first, second = new_run(engine), new_run(engine)
    assert acquire(engine, first, loc="t1").acquired
    assert acquire(engine, second, loc="t2").acquired
    with engine.begin() as conn:
        inventory = leases.try_acquire(
            conn, job=Job.INVENTORY, location_id="t1", run_id=second, owner="x", now=T0, ttl=TTL
        )
        assert inventory.acquired
        assert [(lease.job, lease.location_id) for lease in leases.list_leases(conn)] == [
            (Job.INVENTORY, "t1"),
            (Job.SALES, "t1"),
            (Job.SALES, "t2"),
        ]


def test_the_holding_run_may_acquire_again_and_extends_its_lease(engine: Engine) -> None:
    run_id = new_run(engine)
    acquire(engine, run_id)
    again = acquire(engine, run_id, now=T0 + timedelta(seconds=60))
    assert again.acquired
    assert again.holder is not None
    assert again.holder.expires_at == T0 + timedelta(seconds=60) + TTL


def test_an_expired_lease_is_taken_over_and_its_run_reported(engine: Engine) -> None:
    dead, alive = new_run(engine, "dead"), new_run(engine, "alive")
    acquire(engine, dead, owner="dead")
    taken = acquire(engine, alive, owner="alive", now=T0 + TTL)
    assert taken.acquired
    assert taken.took_over_from == dead
    assert taken.holder is not None
    assert (taken.holder.run_id, taken.holder.owner) == (alive, "alive")


def test_twenty_racers_for_a_free_location_yield_one_winner(engine: Engine) -> None:
    runs = [new_run(engine, f"p{n}") for n in range(20)]
    assert sum(race(engine, runs, now=T0)) == 1


def test_twenty_racers_for_an_expired_lease_yield_one_winner(engine: Engine) -> None:
    dead = new_run(engine, "dead")
    acquire(engine, dead, owner="dead")
    runs = [new_run(engine, f"p{n}") for n in range(20)]
    assert sum(race(engine, runs, now=T0 + TTL + timedelta(seconds=1))) == 1
    with engine.connect() as conn:
        lease = leases.holder(conn, "sales", "t1")
    assert lease is not None
    assert lease.run_id in runs


def race(engine: Engine, run_ids: list[int], *, now: datetime) -> list[bool]:
    gate = threading.Barrier(len(run_ids))

    def contend(run_id: int) -> bool:
        gate.wait()
        return acquire(engine, run_id, owner=f"owner-{run_id}", now=now).acquired

    with ThreadPoolExecutor(max_workers=len(run_ids)) as pool:
        return list(pool.map(contend, run_ids))


def test_renew_extends_only_the_leases_the_run_still_holds(engine: Engine) -> None:
    run_id, other = new_run(engine), new_run(engine, "b")
    acquire(engine, run_id, loc="t1")
    acquire(engine, run_id, loc="t2")
    acquire(engine, other, owner="b", loc="t3")
    later = T0 + timedelta(seconds=20)
    with engine.begin() as conn:
        assert leases.renew(conn, run_id=run_id, owner="host:1:a", now=later, ttl=TTL) == 2
        assert leases.renew(conn, run_id=run_id, owner="impostor", now=later, ttl=TTL) == 0
        expiry = {lease.location_id: lease.expires_at for lease in leases.list_leases(conn)}
    assert expiry == {"t1": later + TTL, "t2": later + TTL, "t3": T0 + TTL}


def test_release_frees_only_the_callers_own_lease(engine: Engine) -> None:
    run_id, other = new_run(engine), new_run(engine, "b")
    acquire(engine, run_id, loc="t1")
    acquire(engine, run_id, loc="t2")
    with engine.begin() as conn:
        assert not leases.release(conn, job="sales", location_id="t1", run_id=other)
        assert leases.release(conn, job="sales", location_id="t1", run_id=run_id)
        assert leases.holder(conn, "sales", "t1") is None
        assert leases.release_all(conn, run_id) == 1
        assert leases.list_leases(conn) == []
    assert acquire(engine, other, owner="b").acquired


# --- reaping ---------------------------------------------------------------------------------


def test_a_run_without_heartbeat_is_abandoned_its_items_failed_and_leases_freed(
    engine: Engine,
) -> None:
    dead, alive = new_run(engine, "host:9:dead"), new_run(engine, "host:1:alive")
    acquire(engine, dead, owner="host:9:dead", loc="t1")
    acquire(engine, alive, owner="host:1:alive", loc="t2")
    later = T0 + TTL + timedelta(seconds=1)
    with engine.begin() as conn:
        ledger.create_items(conn, dead, ["t1", "t3", "t4"])
        ledger.finish_item(conn, dead, "t3", ItemStatus.SUCCEEDED, now=T0)
        ledger.heartbeat_run(conn, alive, owner="host:1:alive", now=later)
        leases.renew(conn, run_id=alive, owner="host:1:alive", now=later, ttl=TTL)
        assert leases.reap_expired(conn, now=later, ttl=TTL) == [dead]
        reaped, survivor = ledger.get_run(conn, dead), ledger.get_run(conn, alive)
        items = {item.location_id: item for item in ledger.get_items(conn, dead)}
        remaining = [lease.run_id for lease in leases.list_leases(conn)]
    assert reaped is not None
    assert survivor is not None
    assert (reaped.status, reaped.finished_at, reaped.error_category) == (
        RunStatus.ABANDONED,
        later,
        "worker_lost",
    )
    assert reaped.error_message == (
        "lease expired: no heartbeat since 2026-01-05T14:00:00+00:00 "
        "(process host:9:dead presumed dead)"
    )
    assert survivor.status is RunStatus.RUNNING
    assert items["t3"].status is ItemStatus.SUCCEEDED
    assert items["t1"].status is items["t4"].status is ItemStatus.FAILED
    assert items["t1"].error_message == reaped.error_message
    assert remaining == [alive]


def test_a_heartbeating_run_far_past_its_deadline_is_timed_out(engine: Engine) -> None:
    stuck = new_run(engine, "host:1:stuck")
    late = T0 + timedelta(minutes=25) + TTL + timedelta(seconds=1)
    with engine.begin() as conn:
        ledger.create_items(conn, stuck, ["t1"])
        ledger.heartbeat_run(conn, stuck, owner="host:1:stuck", now=late)
        assert leases.reap_expired(conn, now=late - timedelta(seconds=2), ttl=TTL) == []
        assert leases.reap_expired(conn, now=late, ttl=TTL) == [stuck]
        run = ledger.get_run(conn, stuck)
        item = ledger.get_items(conn, stuck)[0]
    assert run is not None
    assert (run.status, run.error_category) == (RunStatus.TIMED_OUT, ErrorCategory.DEADLINE)
    assert (item.status, item.error_category) == (ItemStatus.FAILED, ErrorCategory.DEADLINE)


def test_reaping_frees_expired_leases_even_of_runs_that_are_not_reaped(engine: Engine) -> None:
    run_id = new_run(engine)
    acquire(engine, run_id)
    with engine.begin() as conn:
        ledger.heartbeat_run(conn, run_id, owner="host:1:a", now=T0 + TTL)
        assert leases.reap_expired(conn, now=T0 + TTL, ttl=TTL) == []
        assert leases.list_leases(conn) == []


def test_finished_and_queued_runs_are_never_reaped(engine: Engine) -> None:
    done = new_run(engine)
    with engine.begin() as conn:
        ledger.finish_run(conn, done, RunStatus.SUCCEEDED, now=T0)
        ledger.create_run(conn, RunRequest(job=Job.SALES, trigger=Trigger.API), now=T0)
        assert leases.reap_expired(conn, now=T0 + timedelta(days=1), ttl=TTL) == []
        finished = ledger.get_run(conn, done)
    assert finished is not None
    assert finished.status is RunStatus.SUCCEEDED


def test_concurrent_reapers_reap_each_run_exactly_once(engine: Engine) -> None:
    dead = [new_run(engine, f"dead-{n}") for n in range(5)]
    later = T0 + TTL + timedelta(seconds=1)
    gate = threading.Barrier(8)

    def reap(_: int) -> list[int]:
        gate.wait()
        with engine.begin() as conn:
            return leases.reap_expired(conn, now=later, ttl=TTL)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(reap, range(8)))
    reaped = [run_id for result in results for run_id in result]
    assert sorted(reaped) == dead


def test_abandon_run_ends_the_run_fails_its_unfinished_items_and_frees_its_leases(
    engine: Engine,
) -> None:
    run_id, other = new_run(engine, "host:9:dead"), new_run(engine, "host:1:alive")
    acquire(engine, run_id, owner="host:9:dead", loc="t1")
    acquire(engine, other, owner="host:1:alive", loc="t2")
    later = T0 + timedelta(seconds=5)
    message = "worker process exited with code -9 before finishing the run"
    with engine.begin() as conn:
        ledger.create_items(conn, run_id, ["t1", "t3"])
        ledger.finish_item(conn, run_id, "t3", ItemStatus.SUCCEEDED, now=T0)
        assert leases.abandon_run(conn, run_id, now=later, message=message)
        assert not leases.abandon_run(conn, run_id, now=later, message="again")  # ended already
        run = ledger.get_run(conn, run_id)
        items = {item.location_id: item for item in ledger.get_items(conn, run_id)}
        held = {lease.location_id: lease.run_id for lease in leases.list_leases(conn)}
    assert run is not None
    assert (run.status, run.error_category, run.error_message, run.finished_at) == (
        RunStatus.ABANDONED,
        "worker_lost",
        message,
        later,
    )
    assert (items["t1"].status, items["t1"].error_category) == (ItemStatus.FAILED, "worker_lost")
    assert items["t3"].status is ItemStatus.SUCCEEDED
    assert held == {"t2": other}
