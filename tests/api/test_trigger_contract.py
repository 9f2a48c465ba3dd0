"""The existing trigger contract (SPEC §6) plus run_id, idempotency, busy answers and fires."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from api_support import NOW, Api
from httpx import Response
from sqlalchemy import func, select

from fluxion_etl.domain.states import ErrorCategory, ItemStatus, RunStatus, Trigger
from fluxion_etl.store import leases, ledger
from fluxion_etl.store.schema import runs

SYNC, SALES = "/api/etl/sync", "/api/etl/sync/ventas"
CONTRACT_FIELDS = {"success", "message", "status", "ubicacion_id", "run_id"}
FIRE = {"X-Fluxion-Schedule": "inventory", "X-Fluxion-Scheduled-Time": "2026-01-05T14:00:00Z"}


def post(api: Api, path: str, body: object, scope: str = "trigger", **headers: str) -> Response:
    return api.client.post(path, json=body, headers={**api.auth(scope), **headers})


def run_count(api: Api) -> int:
    with api.services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def get_run(api: Api, run_id: int) -> ledger.RunRow:
    with api.services.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    return run


def hold(api: Api, job: str, location_id: str, *, run_id: int = 999, ttl_s: float = 120) -> None:
    with api.services.engine.begin() as conn:
        taken = leases.try_acquire(
            conn,
            job=job,
            location_id=location_id,
            run_id=run_id,
            owner="elsewhere:1:x",
            now=NOW,
            ttl=timedelta(seconds=ttl_s),
        )
    assert taken.acquired


# --- the SPEC §6 calls ------------------------------------------------------------------------


def test_inventory_for_all_locations_answers_202_with_every_contract_field(api: Api) -> None:
    answer = api.client.post(SYNC, json={"ubicacion_id": None}, headers=api.auth("trigger"))

    assert answer.status_code == 202
    body = answer.json()
    assert body.keys() >= CONTRACT_FIELDS
    assert body["success"] is True
    assert body["status"] == "running"
    assert body["ubicacion_id"] is None
    assert isinstance(body["message"], str)
    assert body["message"]
    assert api.launcher.launched == [body["run_id"]]
    run = get_run(api, body["run_id"])
    assert (run.job.value, run.trigger, run.requested_by, run.scope) == (
        "inventory",
        Trigger.API,
        "trigger",
        None,
    )


def test_sales_with_dates_echoes_them_and_queues_a_backfill_of_those_local_days(api: Api) -> None:
    sent = {"ubicacion_id": "tienda_01", "fecha_inicio": "2026-01-01", "fecha_fin": "2026-01-03"}

    answer = api.client.post(SALES, json=sent, headers=api.auth("trigger"))

    assert answer.status_code == 202
    body = answer.json()
    assert CONTRACT_FIELDS | {"fecha_inicio", "fecha_fin"} <= body.keys()
    assert (body["ubicacion_id"], body["fecha_inicio"], body["fecha_fin"]) == (
        "tienda_01",
        "2026-01-01",
        "2026-01-03",
    )
    run = get_run(api, body["run_id"])
    assert (run.job.value, run.scope, run.date_from, run.date_to) == (
        "sales",
        ("tienda_01",),
        date(2026, 1, 1),
        date(2026, 1, 3),
    )


def test_sales_without_dates_syncs_since_each_watermark(api: Api) -> None:
    body = post(api, SALES, {"ubicacion_id": None}).json()

    assert body["fecha_inicio"] is None
    assert body["fecha_fin"] is None
    run = get_run(api, body["run_id"])
    assert (run.date_from, run.date_to) == (None, None)


def test_sales_with_only_a_start_date_runs_to_today_in_the_store_zone(api: Api) -> None:
    body = post(api, SALES, {"ubicacion_id": "tienda_02", "fecha_inicio": "2026-01-04"}).json()

    assert body["fecha_fin"] == "2026-01-05"


def test_a_call_without_a_body_syncs_every_location(api: Api) -> None:
    answer = api.client.post(SYNC, headers=api.auth("trigger"))

    assert answer.status_code == 202
    assert get_run(api, answer.json()["run_id"]).scope is None


# --- idempotency ----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_answers_200_with_the_same_run(api_both: Api) -> None:
    api = api_both
    first = post(api, SYNC, {"ubicacion_id": "tienda_03"}, **{"Idempotency-Key": "k-1"})
    again = post(api, SYNC, {"ubicacion_id": "tienda_03"}, **{"Idempotency-Key": "k-1"})

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["status"] == "running"
    assert again.json()["run_status"] == "queued"
    assert run_count(api) == 1
    assert len(api.launcher.launched) == 1


def test_calls_without_a_key_are_new_requests_once_the_earlier_run_ended(api: Api) -> None:
    ids = set()
    for _ in range(3):
        answer = post(api, SYNC, {"ubicacion_id": "tienda_03"})
        assert answer.status_code == 202, answer.text
        ids.add(answer.json()["run_id"])
        with api.services.engine.begin() as conn:
            ledger.finish_run(conn, answer.json()["run_id"], RunStatus.SUCCEEDED, now=NOW)

    assert len(ids) == 3


def test_a_call_without_a_key_while_a_run_is_queued_for_its_location_is_busy(api: Api) -> None:
    """A queued run takes its locations when it starts; a second run queued now would only find
    them taken (skipped_busy), so the call is answered 409 with the queued run's id."""
    first = post(api, SYNC, {"ubicacion_id": None}).json()["run_id"]

    answer = post(api, SYNC, {"ubicacion_id": "tienda_03"})
    other_job = post(api, SALES, {"ubicacion_id": "tienda_03"})

    assert answer.status_code == 409, answer.text
    assert (answer.json()["run_id"], answer.json()["status"]) == (first, "busy")
    assert "tienda_03" in answer.json()["message"]
    assert other_job.status_code == 202, other_job.text
    assert run_count(api) == 2


def test_a_repeated_key_of_a_finished_run_reports_its_final_status(api: Api) -> None:
    run_id = post(api, SYNC, {"ubicacion_id": None}, **{"Idempotency-Key": "k-2"}).json()["run_id"]
    with api.services.engine.begin() as conn:
        ledger.finish_run(conn, run_id, RunStatus.PARTIAL, now=NOW)

    body = post(api, SYNC, {"ubicacion_id": None}, **{"Idempotency-Key": "k-2"}).json()

    assert (body["run_id"], body["status"], body["run_status"]) == (run_id, "partial", "partial")


def test_a_key_reused_for_a_different_request_is_refused_naming_the_header(api: Api) -> None:
    post(api, SYNC, {"ubicacion_id": "tienda_01"}, **{"Idempotency-Key": "k-3"})

    answer = post(api, SALES, {"ubicacion_id": "tienda_01"}, **{"Idempotency-Key": "k-3"})

    assert answer.status_code == 422
    assert answer.json()["message"].startswith("Idempotency-Key: ")
    assert run_count(api) == 1


# --- busy -----------------------------------------------------------------------------------


def test_409_names_the_running_run_when_every_requested_location_is_busy(api: Api) -> None:
    hold(api, "inventory", "tienda_05", run_id=41)

    answer = post(api, SYNC, {"ubicacion_id": "tienda_05"})

    assert answer.status_code == 409
    body = answer.json()
    assert (body["success"], body["status"], body["run_id"]) == (False, "busy", 41)
    assert body.keys() >= CONTRACT_FIELDS
    assert run_count(api) == 0
    assert api.launcher.launched == []


def test_409_for_a_chain_wide_call_when_every_location_is_busy(api: Api) -> None:
    for location_id in api.services.config.location_ids:
        hold(api, "inventory", location_id, run_id=7)

    answer = post(api, SYNC, {"ubicacion_id": None})

    assert answer.status_code == 409
    assert answer.json()["run_id"] == 7
    assert (
        f"all {len(api.services.config.location_ids)} requested locations"
        in answer.json()["message"]
    )


def test_a_run_starts_when_only_some_requested_locations_are_busy(api: Api) -> None:
    hold(api, "inventory", "tienda_05")

    assert post(api, SYNC, {"ubicacion_id": None}).status_code == 202


def test_an_expired_lease_does_not_make_a_location_busy(api: Api) -> None:
    hold(api, "inventory", "tienda_05", ttl_s=60)
    api.clock.advance(61)

    assert post(api, SYNC, {"ubicacion_id": "tienda_05"}).status_code == 202


def test_a_lease_of_the_other_job_does_not_make_a_location_busy(api: Api) -> None:
    hold(api, "sales", "tienda_05")

    assert post(api, SYNC, {"ubicacion_id": "tienda_05"}).status_code == 202


def test_a_running_run_holds_every_location_it_has_not_finished(api_both: Api) -> None:
    """Between its claim and a location's lease, and between two locations, a running run
    holds no lease: its unfinished items say what it will still load. Once its process is
    presumed dead (no heartbeat for a lease's lifetime) they hold nothing."""
    api = api_both
    chain = post(api, SYNC, {"ubicacion_id": None}).json()["run_id"]
    location_ids = list(api.services.config.location_ids)
    with api.services.engine.begin() as conn:  # what the runner's claim does, in one transaction
        deadline = NOW + timedelta(hours=1)
        assert ledger.claim_run(conn, chain, owner="worker:1:x", now=NOW, deadline_at=deadline)
        ledger.create_items(conn, chain, location_ids)
    again = post(api, SYNC, {"ubicacion_id": None})
    with api.services.engine.begin() as conn:
        ledger.finish_item(conn, chain, location_ids[0], ItemStatus.SUCCEEDED, now=NOW)

    busy = post(api, SYNC, {"ubicacion_id": location_ids[2]})
    done = post(api, SYNC, {"ubicacion_id": location_ids[0]})
    other_job = post(api, SALES, {"ubicacion_id": location_ids[2]})

    assert (again.status_code, again.json()["run_id"]) == (409, chain), again.text
    assert (busy.status_code, busy.json()["run_id"]) == (409, chain), busy.text
    assert done.status_code == 202, done.text
    assert other_job.status_code == 202, other_job.text

    api.clock.advance(api.services.settings.lease_ttl_seconds + 1)  # no heartbeat since NOW
    assert post(api, SYNC, {"ubicacion_id": location_ids[2]}).status_code == 202


# --- scheduler fires ------------------------------------------------------------------------


def test_a_fire_starts_a_scheduled_run_keyed_by_the_fire(api: Api) -> None:
    answer = post(api, SYNC, {"ubicacion_id": None}, **FIRE)

    assert answer.status_code == 202
    body = answer.json()
    assert (body["status"], body["fire_outcome"]) == ("running", "started")
    run = get_run(api, body["run_id"])
    assert run.trigger is Trigger.SCHEDULE
    assert run.schedule_name == "inventory"
    assert run.scheduled_for == datetime.fromisoformat("2026-01-05T14:00:00+00:00")
    assert run.idempotency_key == "fire:inventory:2026-01-05T14:00:00+00:00"
    assert run.requested_by == "trigger"


def test_a_fire_from_the_future_is_refused_one_off_our_cron_is_not(api: Api) -> None:
    """A future time would take the key of the real fire, answered ``duplicate`` when it comes.
    A time off the stored cron may be EventBridge's cron of a deploy in progress: started."""
    future = {**FIRE, "X-Fluxion-Scheduled-Time": "2030-01-05T14:00:00Z"}
    off_cron = {**FIRE, "X-Fluxion-Scheduled-Time": "2026-01-05T13:45:00Z"}

    refused = post(api, SYNC, {"ubicacion_id": None}, **future)
    started = post(api, SYNC, {"ubicacion_id": None}, **off_cron)

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "X-Fluxion-Scheduled-Time"
    assert "is in the future" in refused.json()["message"]
    assert started.status_code == 202, started.text
    assert run_count(api) == 1


def test_a_repeated_fire_in_another_offset_is_a_duplicate_of_the_same_run(api: Api) -> None:
    first = post(api, SYNC, {"ubicacion_id": None}, **FIRE).json()
    local = {**FIRE, "X-Fluxion-Scheduled-Time": "2026-01-05T10:00:00-04:00"}

    again = post(api, SYNC, {"ubicacion_id": None}, **local)

    assert again.status_code == 200
    body = again.json()
    assert (body["status"], body["fire_outcome"], body["run_id"]) == (
        "duplicate",
        "duplicate",
        first["run_id"],
    )
    assert run_count(api) == 1


def test_a_fire_is_started_even_when_every_location_is_busy(api: Api) -> None:
    """A fire is never answered 409 (it would be retried); the run records skipped_busy."""
    hold(api, "inventory", "tienda_05")

    answer = post(api, SYNC, {"ubicacion_id": "tienda_05"}, **FIRE)

    assert answer.status_code == 202


def test_a_fire_needs_both_headers_and_an_aware_time(api: Api) -> None:
    one = post(api, SYNC, None, **{"X-Fluxion-Schedule": "inventory"})
    naive = post(api, SYNC, None, **{**FIRE, "X-Fluxion-Scheduled-Time": "2026-01-05T14:00:00"})

    assert one.status_code == naive.status_code == 422
    assert one.json()["message"].startswith("X-Fluxion-Scheduled-Time: ")
    assert naive.json()["message"].startswith("X-Fluxion-Scheduled-Time: ")


# --- launching ------------------------------------------------------------------------------


def test_a_failed_launch_answers_503_and_fails_the_run_with_category_launch(api: Api) -> None:
    api.launcher.fail_with = "no capacity"

    answer = post(api, SYNC, {"ubicacion_id": "tienda_01"})

    assert answer.status_code == 503
    body = answer.json()
    assert (body["success"], body["status"]) == (False, "failed")
    run = get_run(api, body["run_id"])
    assert run.status is RunStatus.FAILED
    assert run.error_category is ErrorCategory.LAUNCH
    assert "no capacity" in (run.error_message or "")


def test_the_reconcile_route_starts_a_reconcile_run_with_the_days_asked(api: Api) -> None:
    answer = post(api, "/api/etl/sync/reconcile", {"ubicacion_id": "tienda_01", "days": 3})

    assert answer.status_code == 202, answer.text
    run = get_run(api, answer.json()["run_id"])
    assert (run.job, tuple(run.scope or ()), run.params) == (
        "reconcile",
        ("tienda_01",),
        {"days": 3},
    )
    assert api.launcher.launched == [run.id]


def test_the_reconcile_route_refuses_more_days_than_a_month(api: Api) -> None:
    answer = post(api, "/api/etl/sync/reconcile", {"ubicacion_id": None, "days": 90})

    assert answer.status_code == 422
    assert answer.json()["message"].startswith("days")
    assert run_count(api) == 0
