"""The run ledger over HTTP: filters and paging, one run's items, its logs, and cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from api_support import NOW, Api

from fluxion_etl.domain.requests import ItemCounters, RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.store import ledger


def make_run(
    api: Api, job: Job = Job.INVENTORY, trigger: Trigger = Trigger.API, **kw: object
) -> int:
    with api.services.engine.begin() as conn:
        request = RunRequest(job=job, trigger=trigger, requested_by="someone", **kw)
        return ledger.create_run(conn, request, now=api.clock.now()).run_id


def claim(api: Api, run_id: int) -> None:
    with api.services.engine.begin() as conn:
        now = api.clock.now()
        assert ledger.claim_run(
            conn, run_id, owner="h:1:x", now=now, deadline_at=now + timedelta(minutes=20)
        )


def get(api: Api, url: str) -> dict[str, Any]:
    answer = api.client.get(url, headers=api.auth("read"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_runs_are_listed_newest_first_and_filtered(api: Api) -> None:
    first = make_run(api, Job.INVENTORY, Trigger.API)
    api.clock.advance(60)
    second = make_run(api, Job.SALES, Trigger.SCHEDULE)
    third = make_run(api, Job.SALES, Trigger.CLI)

    assert [r["id"] for r in get(api, "/api/etl/runs")["runs"]] == [third, second, first]
    assert [r["id"] for r in get(api, "/api/etl/runs?job=sales")["runs"]] == [third, second]
    assert [r["id"] for r in get(api, "/api/etl/runs?trigger=schedule")["runs"]] == [second]
    since = (NOW + timedelta(seconds=30)).isoformat()
    assert [
        r["id"] for r in get(api, f"/api/etl/runs?since={since.replace('+', '%2B')}")["runs"]
    ] == [
        third,
        second,
    ]
    assert get(api, "/api/etl/runs?status=succeeded")["runs"] == []


def test_runs_filter_by_location_through_their_items(api: Api) -> None:
    wanted, other = make_run(api), make_run(api)
    with api.services.engine.begin() as conn:
        ledger.create_items(conn, wanted, ["tienda_01", "tienda_02"])
        ledger.create_items(conn, other, ["tienda_03"])

    assert [r["id"] for r in get(api, "/api/etl/runs?location=tienda_02")["runs"]] == [wanted]


def test_paging_walks_every_run_once(api: Api) -> None:
    ids = [make_run(api) for _ in range(5)]
    seen, offset = [], 0
    while offset is not None:
        page = get(api, f"/api/etl/runs?limit=2&offset={offset}")
        seen += [r["id"] for r in page["runs"]]
        offset = page["next_offset"]

    assert seen == sorted(ids, reverse=True)


def test_one_run_shows_its_items_counters_timings_and_errors(api: Api) -> None:
    run_id = make_run(api, locations=("tienda_01", "tienda_02"))
    claim(api, run_id)
    with api.services.engine.begin() as conn:
        ledger.create_items(conn, run_id, ["tienda_01", "tienda_02"])
        ledger.finish_item(
            conn,
            run_id,
            "tienda_01",
            ItemStatus.SUCCEEDED,
            now=NOW,
            counters=ItemCounters(fetched=10, inserted=7, unchanged=3),
            timings={"extract_ms": 1200, "transform_ms": 30, "load_ms": 400},
        )
        ledger.finish_item(
            conn,
            run_id,
            "tienda_02",
            ItemStatus.FAILED,
            now=NOW,
            error_category="timeout",
            error_phase="extract",
            error_message="read timeout after 30 s",
        )

    run = get(api, f"/api/etl/runs/{run_id}")

    assert run["status"] == "running"
    assert run["scope"] == ["tienda_01", "tienda_02"]
    one, two = run["items"]
    assert one["counters"]["inserted"] == 7
    assert one["timings"] == {"extract_ms": 1200, "transform_ms": 30, "load_ms": 400}
    assert (two["status"], two["error_category"], two["error_phase"]) == (
        "failed",
        "timeout",
        "extract",
    )
    assert run["totals"]["fetched"] == 10


def test_an_unknown_run_is_404(api: Api) -> None:
    for url in ("/api/etl/runs/12345", "/api/etl/runs/12345/logs"):
        answer = api.client.get(url, headers=api.auth("read"))
        assert answer.status_code == 404
        assert answer.json()["message"] == "no run 12345"
    cancel = api.client.post("/api/etl/runs/12345/cancel", headers=api.auth("admin"))
    assert cancel.status_code == 404


def test_logs_are_read_in_order_and_followed_with_after_id(api: Api) -> None:
    run_id = make_run(api)
    with api.services.engine.begin() as conn:
        for i in range(3):
            ledger.append_log(
                conn,
                run_id,
                now=NOW,
                level="info",
                event=f"line {i}",
                max_lines=100,
                location_id="tienda_01",
                fields={"n": i},
            )

    page = get(api, f"/api/etl/runs/{run_id}/logs?limit=2")
    rest = get(api, f"/api/etl/runs/{run_id}/logs?after_id={page['next_after_id']}")

    assert [line["event"] for line in page["lines"]] == ["line 0", "line 1"]
    assert [line["event"] for line in rest["lines"]] == ["line 2"]
    assert rest["lines"][0]["fields"] == {"n": 2}
    assert rest["finished"] is False  # still queued: more may come


def test_the_log_of_an_ended_run_says_it_is_finished(api: Api) -> None:
    run_id = make_run(api)
    with api.services.engine.begin() as conn:
        ledger.finish_run(conn, run_id, RunStatus.SUCCEEDED, now=NOW)

    assert get(api, f"/api/etl/runs/{run_id}/logs")["finished"] is True


def cancel(api: Api, run_id: int) -> tuple[int, dict[str, Any]]:
    answer = api.client.post(f"/api/etl/runs/{run_id}/cancel", headers=api.auth("admin"))
    return answer.status_code, answer.json()


def test_cancelling_a_queued_run_ends_it_at_once(api: Api) -> None:
    code, body = cancel(api, make_run(api))

    assert code == 200
    assert (body["success"], body["run_status"]) == (True, "cancelled")


def test_cancelling_a_running_run_asks_it_to_stop(api: Api) -> None:
    run_id = make_run(api)
    claim(api, run_id)

    code, body = cancel(api, run_id)

    assert code == 200
    assert (body["run_status"], body["cancel_requested"]) == ("running", True)
    with api.services.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    assert run.cancel_requested


@pytest.mark.parametrize(
    ("final", "code"), [(RunStatus.SUCCEEDED, 409), (RunStatus.CANCELLED, 200)]
)
def test_cancelling_an_ended_run_changes_nothing(api: Api, final: RunStatus, code: int) -> None:
    run_id = make_run(api)
    with api.services.engine.begin() as conn:
        ledger.finish_run(conn, run_id, final, now=NOW)

    answer_code, body = cancel(api, run_id)

    assert answer_code == code
    assert body["run_status"] == final.value
    assert "already ended" in body["message"]
