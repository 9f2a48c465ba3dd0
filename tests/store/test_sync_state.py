"""Sync state on both dialects: watermark that never goes back, last success, circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from fluxion_etl.domain.states import ErrorCategory
from fluxion_etl.store import sync_state
from fluxion_etl.store.sync_state import SyncStateRow

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
RESET = timedelta(minutes=5)


def fail(conn: Connection, now: datetime = T0, loc: str = "t1") -> SyncStateRow:
    return sync_state.record_failure(
        conn,
        job="sales",
        location_id=loc,
        now=now,
        category=ErrorCategory.TIMEOUT,
        message="read timeout after 600 s",
        threshold=3,
        reset_after=RESET,
    )


def state(conn: Connection, loc: str = "t1") -> SyncStateRow:
    found = sync_state.get_state(conn, "sales", loc)
    assert found is not None
    return found


def test_a_location_never_synced_has_no_state_and_a_closed_circuit(engine: Engine) -> None:
    with engine.begin() as conn:
        assert sync_state.get_state(conn, "sales", "t1") is None
        assert sync_state.circuit_allows(conn, job="sales", location_id="t1", now=T0)
        assert sync_state.all_states(conn) == []


def test_success_records_the_run_time_and_watermark(engine: Engine) -> None:
    mark = T0 - timedelta(minutes=1)
    with engine.begin() as conn:
        sync_state.record_success(
            conn, job="sales", location_id="t1", run_id=7, now=T0, watermark=mark
        )
        got = state(conn)
    assert (got.last_success_at, got.last_success_run_id, got.last_attempt_at) == (T0, 7, T0)
    assert (got.watermark, got.consecutive_failures, got.circuit_open_until) == (mark, 0, None)


def test_the_watermark_never_moves_backwards(engine: Engine) -> None:
    later, earlier = T0, T0 - timedelta(hours=1)
    with engine.begin() as conn:
        sync_state.record_success(
            conn, job="sales", location_id="t1", run_id=1, now=T0, watermark=later
        )
        sync_state.record_success(
            conn, job="sales", location_id="t1", run_id=2, now=T0, watermark=earlier
        )
        sync_state.advance_watermark(conn, job="sales", location_id="t1", watermark=earlier)
        assert state(conn).watermark == later
        sync_state.record_success(conn, job="sales", location_id="t1", run_id=3, now=T0)
        assert state(conn).watermark == later
        sync_state.advance_watermark(
            conn, job="sales", location_id="t1", watermark=later + timedelta(minutes=30)
        )
        assert state(conn).watermark == later + timedelta(minutes=30)
        assert state(conn).last_success_run_id == 3


def test_advancing_the_watermark_of_a_new_location_creates_its_state(engine: Engine) -> None:
    with engine.begin() as conn:
        sync_state.advance_watermark(conn, job="sales", location_id="t9", watermark=T0)
        got = state(conn, "t9")
    assert (got.watermark, got.last_success_at, got.consecutive_failures) == (T0, None, 0)


def test_failures_count_up_and_the_threshold_opens_the_circuit(engine: Engine) -> None:
    with engine.begin() as conn:
        first, second = fail(conn), fail(conn, T0 + timedelta(seconds=1))
        assert (first.consecutive_failures, first.circuit_open_until) == (1, None)
        assert (second.consecutive_failures, second.circuit_open_until) == (2, None)
        assert sync_state.circuit_allows(conn, job="sales", location_id="t1", now=T0)
        third = fail(conn, T0 + timedelta(seconds=2))
    assert third.consecutive_failures == 3
    assert third.circuit_open_until == T0 + timedelta(seconds=2) + RESET
    assert third.last_error_category is ErrorCategory.TIMEOUT
    assert third.last_error_message == "read timeout after 600 s"
    assert third.last_attempt_at == T0 + timedelta(seconds=2)


def test_an_open_circuit_blocks_until_its_reset_time_then_allows_a_probe(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(3):
            opened = fail(conn, T0 + timedelta(seconds=n))
        until = opened.circuit_open_until
        assert until is not None

        def allows(now: datetime) -> bool:
            return sync_state.circuit_allows(conn, job="sales", location_id="t1", now=now)

        assert not allows(until - timedelta(seconds=1))
        assert allows(until)
        assert sync_state.circuit_allows(conn, job="inventory", location_id="t1", now=T0)
        assert sync_state.circuit_allows(conn, job="sales", location_id="t2", now=T0)


def test_a_failed_probe_reopens_the_circuit_for_another_period(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(3):
            fail(conn, T0 + timedelta(seconds=n))
        probe_time = T0 + timedelta(minutes=10)
        reopened = fail(conn, probe_time)
    assert reopened.consecutive_failures == 4
    assert reopened.circuit_open_until == probe_time + RESET


def test_each_failed_probe_doubles_the_open_period_up_to_the_maximum(engine: Engine) -> None:
    periods, now = [], T0
    with engine.begin() as conn:
        for _ in range(7):
            got = sync_state.record_failure(
                conn,
                job="sales",
                location_id="t1",
                now=now,
                category=ErrorCategory.NETWORK,
                message="connection refused",
                threshold=3,
                reset_after=RESET,
                reset_max=timedelta(minutes=30),
            )
            if got.circuit_open_until is not None:
                periods.append(got.circuit_open_until - now)
                now = got.circuit_open_until  # the next probe, when the period ends
            else:
                now += timedelta(minutes=1)
    minutes = [period / timedelta(minutes=1) for period in periods]
    assert minutes == [5, 10, 20, 30, 30]


def test_a_maximum_below_the_reset_period_keeps_the_period(engine: Engine) -> None:
    assert sync_state.open_periods(timedelta(hours=2), timedelta(hours=1)) == [timedelta(hours=2)]
    assert sync_state.open_periods(RESET, None) == [RESET]


def test_a_success_closes_the_circuit_and_keeps_the_last_error_for_the_record(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        for n in range(3):
            fail(conn, T0 + timedelta(seconds=n))
        later = T0 + timedelta(minutes=10)
        sync_state.record_success(conn, job="sales", location_id="t1", run_id=5, now=later)
        got = state(conn)
        assert sync_state.circuit_allows(conn, job="sales", location_id="t1", now=later)
    assert (got.consecutive_failures, got.circuit_open_until) == (0, None)
    assert got.last_error_category is ErrorCategory.TIMEOUT


def test_a_threshold_of_one_opens_on_the_first_failure(engine: Engine) -> None:
    with engine.begin() as conn:
        got = sync_state.record_failure(
            conn,
            job="inventory",
            location_id="t1",
            now=T0,
            category="network",
            message="refused",
            threshold=1,
            reset_after=RESET,
        )
    assert got.circuit_open_until == T0 + RESET


def test_all_states_lists_every_job_and_location(engine: Engine) -> None:
    with engine.begin() as conn:
        fail(conn, loc="t2")
        sync_state.record_success(conn, job="inventory", location_id="t1", run_id=1, now=T0)
        keys = [(s.job, s.location_id) for s in sync_state.all_states(conn)]
    assert keys == [("inventory", "t1"), ("sales", "t2")]
