"""The run ledger on both dialects: idempotent submission, guarded transitions, items, summaries."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from fluxion_etl.domain.requests import ItemCounters, RunRequest, SubmitResult
from fluxion_etl.domain.states import (
    ErrorCategory,
    ErrorPhase,
    ItemStatus,
    Job,
    RunStatus,
    Trigger,
)
from fluxion_etl.store import ledger
from fluxion_etl.store.schema import raw_payloads

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=25)


def submit(engine: Engine, request: RunRequest, now: datetime = T0) -> SubmitResult:
    with engine.begin() as conn:
        return ledger.create_run(conn, request, now=now, launcher="inline")


def sales(**kwargs: object) -> RunRequest:
    return RunRequest(job=Job.SALES, trigger=Trigger.API, **kwargs)  # type: ignore[arg-type]


def running_run(engine: Engine, owner: str = "host:1:a") -> int:
    run_id = submit(engine, sales()).run_id
    with engine.begin() as conn:
        assert ledger.claim_run(conn, run_id, owner=owner, now=T0, deadline_at=DEADLINE)
    return run_id


def run(engine: Engine, run_id: int) -> ledger.RunRow:
    with engine.connect() as conn:
        found = ledger.get_run(conn, run_id)
    assert found is not None
    return found


# --- submission ------------------------------------------------------------------------------


def test_a_new_run_is_queued_and_keeps_every_field_of_the_request(engine: Engine) -> None:
    request = RunRequest(
        job=Job.SALES,
        trigger=Trigger.BACKFILL,
        locations=("tienda_01", "tienda_08"),
        date_from=date(2026, 1, 1),
        date_to=date(2026, 1, 3),
        requested_by="ops-token",
        idempotency_key="abc",
        schedule_name="sales",
        scheduled_for=T0,
        params={"allow_mass_deletion": True},
    )
    result = submit(engine, request)
    assert result == SubmitResult(run_id=result.run_id, created=True, status=RunStatus.QUEUED)
    stored = run(engine, result.run_id)
    assert stored.status is RunStatus.QUEUED
    assert stored.created_at == T0
    assert stored.launcher == "inline"
    assert not stored.cancel_requested
    assert stored.to_request() == request


def test_requests_without_a_key_are_separate_runs(engine: Engine) -> None:
    first, second = submit(engine, sales()), submit(engine, sales())
    assert (first.created, second.created) == (True, True)
    assert first.run_id != second.run_id


def test_a_repeated_key_returns_the_existing_run_with_its_current_status(engine: Engine) -> None:
    first = submit(engine, sales(idempotency_key="k1"))
    with engine.begin() as conn:
        ledger.claim_run(conn, first.run_id, owner="o", now=T0, deadline_at=DEADLINE)
    again = submit(engine, sales(idempotency_key="k1"), now=T0 + timedelta(minutes=1))
    assert again == SubmitResult(run_id=first.run_id, created=False, status=RunStatus.RUNNING)


def test_fifty_concurrent_deliveries_of_one_fire_make_one_run(engine: Engine) -> None:
    key = ledger.fire_key("sales", T0)
    gate = threading.Barrier(50)

    def deliver(_: int) -> SubmitResult:
        gate.wait()
        fire = RunRequest(job=Job.SALES, trigger=Trigger.SCHEDULE, idempotency_key=key)
        return submit(engine, fire)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(deliver, range(50)))
    assert sum(r.created for r in results) == 1
    assert len({r.run_id for r in results}) == 1
    with engine.connect() as conn:
        assert len(ledger.list_runs(conn, limit=100)) == 1


def test_fire_key_names_the_schedule_and_the_utc_instant() -> None:
    caracas = T0.astimezone(ZoneInfo("America/Caracas"))
    assert ledger.fire_key("sales", caracas) == "fire:sales:2026-01-05T14:00:00+00:00"
    with pytest.raises(ValueError, match="naive"):
        ledger.fire_key("sales", datetime(2026, 1, 5, 14, 0))


# --- transitions -----------------------------------------------------------------------------


def test_a_run_is_claimed_once(engine: Engine) -> None:
    run_id = submit(engine, sales()).run_id
    with engine.begin() as conn:
        assert ledger.claim_run(conn, run_id, owner="a", now=T0, deadline_at=DEADLINE)
        assert not ledger.claim_run(conn, run_id, owner="b", now=T0, deadline_at=DEADLINE)
    claimed = run(engine, run_id)
    assert (claimed.status, claimed.owner) == (RunStatus.RUNNING, "a")
    assert claimed.started_at == claimed.heartbeat_at == T0
    assert claimed.deadline_at == DEADLINE


def test_heartbeat_moves_the_heartbeat_and_reports_a_cancel_request(engine: Engine) -> None:
    run_id = running_run(engine, owner="a")
    later = T0 + timedelta(seconds=20)
    with engine.begin() as conn:
        assert ledger.heartbeat_run(conn, run_id, owner="a", now=later) is False
        assert ledger.request_cancel(conn, run_id, by="maria", now=later) is not None
        assert ledger.heartbeat_run(conn, run_id, owner="a", now=later) is True
    assert run(engine, run_id).heartbeat_at == later


def test_heartbeat_tells_a_process_to_stop_once_its_run_is_no_longer_its_own(
    engine: Engine,
) -> None:
    run_id = running_run(engine, owner="a")
    with engine.begin() as conn:
        assert ledger.heartbeat_run(conn, run_id, owner="someone-else", now=T0) is True
        ledger.finish_run(conn, run_id, RunStatus.ABANDONED, now=T0)
        assert ledger.heartbeat_run(conn, run_id, owner="a", now=T0) is True


def test_cancelling_a_queued_run_cancels_it_at_once(engine: Engine) -> None:
    run_id = submit(engine, sales()).run_id
    with engine.begin() as conn:
        after = ledger.request_cancel(conn, run_id, by="maria", now=T0)
        assert after is not None
        assert not ledger.claim_run(conn, run_id, owner="a", now=T0, deadline_at=DEADLINE)
    assert after.status is RunStatus.CANCELLED
    assert after.finished_at == T0
    assert "maria" in (after.error_message or "")


def test_cancelling_a_running_run_asks_it_to_stop_and_records_who_asked(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        after = ledger.request_cancel(conn, run_id, by="maria", now=T0)
        assert after is not None
        assert (after.status, after.cancel_requested) == (RunStatus.RUNNING, True)
        ledger.finish_run(conn, run_id, RunStatus.CANCELLED, now=T0)
    assert "maria" in (run(engine, run_id).error_message or "")


def test_cancelling_a_finished_or_missing_run_changes_nothing(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        ledger.finish_run(conn, run_id, RunStatus.SUCCEEDED, now=T0)
        after = ledger.request_cancel(conn, run_id, by="maria", now=T0)
        assert ledger.request_cancel(conn, 999_999, by="maria", now=T0) is None
    assert after is not None
    assert (after.status, after.cancel_requested) == (RunStatus.SUCCEEDED, False)


def test_a_final_status_is_never_overwritten(engine: Engine) -> None:
    run_id = running_run(engine)
    later = T0 + timedelta(minutes=5)
    with engine.begin() as conn:
        assert ledger.finish_run(
            conn,
            run_id,
            RunStatus.FAILED,
            now=T0,
            error_category=ErrorCategory.NETWORK,
            error_message="KLK unreachable",
        )
        assert not ledger.finish_run(conn, run_id, RunStatus.SUCCEEDED, now=later)
    finished = run(engine, run_id)
    assert (finished.status, finished.finished_at) == (RunStatus.FAILED, T0)
    assert finished.error_category is ErrorCategory.NETWORK
    assert finished.error_message == "KLK unreachable"


def test_finish_run_refuses_a_status_that_is_not_final(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn, pytest.raises(ValueError, match="final"):
        ledger.finish_run(conn, run_id, RunStatus.RUNNING, now=T0)


def test_external_ref_is_recorded(engine: Engine) -> None:
    run_id = submit(engine, sales()).run_id
    with engine.begin() as conn:
        ledger.set_external_ref(conn, run_id, "arn:aws:ecs:task/abc")
    assert run(engine, run_id).external_ref == "arn:aws:ecs:task/abc"


def test_list_runs_filters_and_pages_newest_first(engine: Engine) -> None:
    ids = [submit(engine, sales(), now=T0 + timedelta(minutes=n)).run_id for n in range(3)]
    inventory = submit(engine, RunRequest(job=Job.INVENTORY, trigger=Trigger.SCHEDULE)).run_id
    with engine.begin() as conn:
        ledger.create_items(conn, ids[0], ["tienda_01"])
        ledger.claim_run(conn, ids[1], owner="o", now=T0, deadline_at=DEADLINE)

        def listed(**filters: object) -> list[int]:
            return [r.id for r in ledger.list_runs(conn, **filters)]  # type: ignore[arg-type]

        assert listed() == [inventory, ids[2], ids[1], ids[0]]
        assert listed(job=Job.SALES, limit=2) == [ids[2], ids[1]]
        assert listed(job=Job.SALES, limit=2, offset=2) == [ids[0]]
        assert listed(status=RunStatus.RUNNING) == [ids[1]]
        assert listed(trigger=Trigger.SCHEDULE) == [inventory]
        assert listed(location_id="tienda_01") == [ids[0]]
        assert listed(job="sales", since=T0 + timedelta(minutes=1)) == [ids[2], ids[1]]


# --- items -----------------------------------------------------------------------------------


def test_items_go_from_pending_to_a_final_status_with_counters(engine: Engine) -> None:
    run_id = running_run(engine)
    counters = ItemCounters(fetched=10, inserted=7, updated=1, unchanged=2, duplicates=1)
    windows = [{"day": "2026-01-05", "from": "09:00:00", "to": "10:00:00", "lines": 10}]
    with engine.begin() as conn:
        ledger.create_items(conn, run_id, ["tienda_01", "tienda_02"])
        assert ledger.start_item(conn, run_id, "tienda_01", now=T0)
        assert not ledger.start_item(conn, run_id, "tienda_01", now=T0)
        assert ledger.finish_item(
            conn,
            run_id,
            "tienda_01",
            ItemStatus.SUCCEEDED,
            now=T0 + timedelta(seconds=3),
            counters=counters,
            windows=windows,
            timings={"extract_ms": 1200, "transform_ms": 30, "load_ms": 80},
        )
        assert ledger.finish_item(
            conn,
            run_id,
            "tienda_02",
            ItemStatus.FAILED,
            now=T0,
            error_category=ErrorCategory.TIMEOUT,
            error_phase=ErrorPhase.EXTRACT,
            error_message="read timeout",
        )
        items = ledger.get_items(conn, run_id)
    done, failed = items
    assert (done.location_id, done.status, done.counters) == ("tienda_01", "succeeded", counters)
    assert (done.extract_ms, done.transform_ms, done.load_ms) == (1200, 30, 80)
    assert (done.fetched, done.inserted, done.held) == (10, 7, 0)
    assert done.windows == windows
    assert (done.started_at, done.finished_at) == (T0, T0 + timedelta(seconds=3))
    assert failed.status is ItemStatus.FAILED
    assert failed.error_category is ErrorCategory.TIMEOUT
    assert failed.error_phase is ErrorPhase.EXTRACT
    assert failed.counters == ItemCounters()
    assert failed.started_at is None


def test_a_finished_item_is_never_overwritten(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        ledger.create_items(conn, run_id, ["tienda_01"])
        ledger.finish_item(conn, run_id, "tienda_01", ItemStatus.SKIPPED_BUSY, now=T0)
        assert not ledger.finish_item(conn, run_id, "tienda_01", ItemStatus.SUCCEEDED, now=T0)
        assert ledger.get_items(conn, run_id)[0].status is ItemStatus.SKIPPED_BUSY


S, F, B, C = (
    ItemStatus.SUCCEEDED,
    ItemStatus.FAILED,
    ItemStatus.SKIPPED_BUSY,
    ItemStatus.SKIPPED_OPEN_CIRCUIT,
)


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([S, S], RunStatus.SUCCEEDED),
        ([S, F], RunStatus.PARTIAL),
        ([S, B], RunStatus.PARTIAL),
        ([S, C], RunStatus.PARTIAL),
        ([F, F], RunStatus.FAILED),
        ([F, B, C], RunStatus.FAILED),
        ([B, B], RunStatus.FAILED),
        ([C], RunStatus.FAILED),
        ([S, ItemStatus.PENDING], RunStatus.PARTIAL),
        ([], RunStatus.FAILED),
    ],
)
def test_run_status_summarises_its_items(items: list[ItemStatus], status: RunStatus) -> None:
    assert ledger.summarize_status(items) is status


def test_summary_message_explains_what_did_not_succeed() -> None:
    assert ledger.summary_message([S, S]) is None
    assert ledger.summary_message([B, B]) == (
        "every location was busy: another run of this job held each one"
    )
    assert ledger.summary_message([S, F, B]) == (
        "2 of 3 locations did not succeed (1 failed, 1 skipped_busy)"
    )
    assert ledger.summary_message([]) == "the run had no locations to sync"


# --- logs and raw payloads -------------------------------------------------------------------


def test_log_lines_are_bounded_and_the_cut_is_marked_once(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        kept = [
            ledger.append_log(
                conn,
                run_id,
                now=T0,
                level="info",
                event=f"line {n}",
                location_id="tienda_01",
                fields={"n": n, "at": T0},
                max_lines=3,
            )
            for n in range(6)
        ]
        lines = ledger.read_logs(conn, run_id)
    assert kept == [True, True, True, False, False, False]
    assert [line.event for line in lines[:3]] == ["line 0", "line 1", "line 2"]
    assert lines[0].fields == {"n": 0, "at": str(T0)}
    assert lines[0].location_id == "tienda_01"
    assert len(lines) == 4
    assert lines[3].level == "warning"
    assert "limit of 3 lines" in lines[3].event


def test_read_logs_follows_from_the_last_id_seen(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        for n in range(5):
            ledger.append_log(conn, run_id, now=T0, level="info", event=f"e{n}", max_lines=100)
        first = ledger.read_logs(conn, run_id, limit=2)
        rest = ledger.read_logs(conn, run_id, after_id=first[-1].id)
    assert [line.event for line in first + rest] == ["e0", "e1", "e2", "e3", "e4"]
    assert first[0].at == T0


def test_a_raw_payload_is_kept_and_cut_to_the_size_limit(engine: Engine) -> None:
    run_id = running_run(engine)
    with engine.begin() as conn:
        big = ledger.save_raw_payload(
            conn,
            run_id=run_id,
            location_id="tienda_01",
            call="POST /ventas",
            category=ErrorCategory.BAD_PAYLOAD,
            body=b"x" * 2000,
            now=T0,
            max_bytes=1024,
        )
        small = ledger.save_raw_payload(
            conn,
            run_id=run_id,
            location_id="tienda_01",
            call="POST /ventas",
            category=ErrorCategory.ERROR_BODY,
            body=b'{"error": "x"}',
            now=T0,
            max_bytes=1024,
        )
        rows = {r.id: r for r in conn.execute(select(raw_payloads))}
    assert (rows[big].size, rows[big].truncated, len(rows[big].body)) == (2000, True, 1024)
    assert (rows[small].truncated, rows[small].body) == (False, b'{"error": "x"}')
    assert rows[big].category == "bad_payload"


def test_purge_drops_logs_and_payloads_of_old_finished_runs_only(engine: Engine) -> None:
    old, live = running_run(engine), running_run(engine)
    with engine.begin() as conn:
        for run_id in (old, live):
            ledger.append_log(conn, run_id, now=T0, level="info", event="x", max_lines=10)
            ledger.save_raw_payload(
                conn,
                run_id=run_id,
                location_id="t",
                call="c",
                category="network",
                body=b"",
                now=T0,
                max_bytes=1024,
            )
        ledger.finish_run(conn, old, RunStatus.SUCCEEDED, now=T0)
        purged = ledger.purge_runs(conn, older_than=T0 + timedelta(days=1))
        assert purged == ledger.PurgeResult(logs=1, payloads=1)
        assert ledger.read_logs(conn, old) == []
        assert len(ledger.read_logs(conn, live)) == 1
        assert ledger.get_run(conn, old) is not None  # the ledger row itself is kept
        assert ledger.purge_raw_payloads(conn, older_than=T0) == 0
        assert ledger.purge_raw_payloads(conn, older_than=T0 + timedelta(seconds=1)) == 1
