"""What the pages' buttons do: each change is made through the product's own functions, carries
the token's name (on the run, in the audit trail) and says what happened on the next page."""

from __future__ import annotations

from datetime import timedelta

from pages_support import Pages

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import ItemCounters, RunRequest
from fluxion_etl.domain.states import FireOutcome, ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.settings import Settings
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld
from fluxion_etl.store import audit, ledger, schedules, sync_state


def _finished_run(pages: Pages, outcomes: dict[str, ItemStatus]) -> int:
    """A sales run that ended with ``outcomes`` per location, with a few log lines."""
    now = pages.clock.now()
    with pages.engine.begin() as conn:
        request = RunRequest(job=Job.SALES, trigger=Trigger.SCHEDULE, locations=tuple(outcomes))
        run_id = ledger.create_run(conn, request, now=now).run_id
        ledger.create_items(conn, run_id, outcomes)
        ledger.claim_run(conn, run_id, owner="t", now=now, deadline_at=now + timedelta(hours=1))
        for location_id, status in outcomes.items():
            failed = status is ItemStatus.FAILED
            ledger.finish_item(
                conn,
                run_id,
                location_id,
                status,
                now=now,
                counters=ItemCounters(fetched=0 if failed else 40, inserted=0 if failed else 40),
                timings={"extract_ms": 300, "transform_ms": 20, "load_ms": 80},
                error_category="http_status" if failed else None,
                error_phase="extract" if failed else None,
                error_message="KLK ventas: HTTP 503 Service Unavailable" if failed else None,
            )
            event = "location failed" if failed else "sales loaded"
            ledger.append_log(
                conn, run_id, now=now, level="error" if failed else "info", event=event,
                location_id=location_id, max_lines=100,
            )  # fmt: skip
        statuses = list(outcomes.values())
        ledger.finish_run(conn, run_id, ledger.summarize_status(statuses), now=now)
    return run_id


def test_switching_a_schedule_off_and_on_is_recorded_with_the_token_name(pages: Pages) -> None:
    client = pages.login("admin")
    off = pages.post(client, "/schedules/sales/enabled", enabled="false")
    assert (off.status_code, off.headers["location"]) == (303, "/schedules")
    page = client.get("/schedules").text
    assert "Programación «sales» desactivada." in page
    with pages.engine.connect() as conn:
        stored = schedules.get_schedule(conn, "sales")
        assert stored is not None
        assert (stored.definition.enabled, stored.updated_by) == (False, "admin")
    assert "está desactivada" in client.get("/").text  # the overview warns
    pages.post(client, "/schedules/sales/enabled", enabled="true")
    with pages.engine.connect() as conn:
        stored = schedules.get_schedule(conn, "sales")
        trail = audit.entries(conn, action="schedule.update")
    assert stored is not None
    assert stored.definition.enabled
    assert [(e.actor, e.target, e.detail) for e in trail] == [
        ("admin", "sales", {"enabled": {"from": False, "to": True}}),
        ("admin", "sales", {"enabled": {"from": True, "to": False}}),
    ]


def test_a_crafted_enabled_value_changes_nothing(pages: Pages) -> None:
    client = pages.login("admin")

    answer = pages.post(client, "/schedules/sales/enabled", enabled="maybe")

    assert (answer.status_code, answer.headers["location"]) == (303, "/schedules")
    assert "send true or false" in client.get("/schedules").text
    with pages.engine.connect() as conn:
        stored = schedules.get_schedule(conn, "sales")
        assert audit.entries(conn, action="schedule.update") == []
    assert stored is None or stored.definition.enabled


def test_firing_a_schedule_by_hand_starts_its_run_and_records_a_manual_fire(pages: Pages) -> None:
    client = pages.login("trigger")
    answer = pages.post(client, "/schedules/inventory/trigger")
    run_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        fires = schedules.list_fires(conn, schedule_name="inventory")
    assert run is not None
    assert (run.job, run.trigger, run.requested_by, run.schedule_name) == (
        Job.INVENTORY, Trigger.API, "trigger", "inventory",
    )  # fmt: skip
    assert [(f.outcome, f.source.value, f.run_id) for f in fires] == [
        (FireOutcome.STARTED, "manual", run_id)
    ]
    assert pages.launcher.launched == [run_id]
    assert f"Ejecución {run_id} iniciada." in client.get(f"/runs/{run_id}").text


def test_cancelling_a_queued_run_cancels_it_and_names_who(pages: Pages) -> None:
    with pages.engine.begin() as conn:
        request = RunRequest(job=Job.INVENTORY, trigger=Trigger.API)
        run_id = ledger.create_run(conn, request, now=pages.clock.now()).run_id
    client = pages.login("admin")
    pages.post(client, f"/runs/{run_id}/cancel")
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        trail = audit.entries(conn, action="run.cancel")
    assert run is not None
    assert run.status is RunStatus.CANCELLED
    assert "cancelled by admin" in (run.error_message or "")
    assert [(e.actor, e.target) for e in trail] == [("admin", f"run:{run_id}")]
    again = pages.post(client, f"/runs/{run_id}/cancel")
    assert "ya había terminado" in client.get(again.headers["location"]).text


def test_a_rerun_covers_only_the_locations_that_did_not_succeed(pages: Pages) -> None:
    outcomes = {
        "tienda_01": ItemStatus.SUCCEEDED,
        "tienda_02": ItemStatus.FAILED,
        "tienda_03": ItemStatus.SKIPPED_BUSY,
    }
    first = _finished_run(pages, outcomes)
    client = pages.login("trigger")
    detail = client.get(f"/runs/{first}").text
    assert "Repetir las ubicaciones que fallaron (2)" in detail
    answer = pages.post(client, f"/runs/{first}/rerun")
    second = int(answer.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, second)
    assert run is not None
    assert run.scope == ("tienda_02", "tienda_03")
    assert (run.job, run.requested_by, run.params["rerun_of"]) == (Job.SALES, "trigger", first)


def test_a_location_paused_after_repeated_failures_is_not_offered_a_rerun(pages: Pages) -> None:
    """A re-run would only skip it (``skipped_open_circuit``): the page says until when."""
    outcomes = {"tienda_01": ItemStatus.FAILED, "tienda_02": ItemStatus.FAILED}
    first = _finished_run(pages, outcomes)
    with pages.engine.begin() as conn:
        sync_state.record_failure(
            conn, job="sales", location_id="tienda_02", now=pages.clock.now(),
            category="http_status", message="HTTP 503", threshold=1,
            reset_after=timedelta(minutes=20),
        )  # fmt: skip
    client = pages.login("trigger")

    detail = client.get(f"/runs/{first}").text
    answer = pages.post(client, f"/runs/{first}/rerun")

    assert "Repetir las ubicaciones que fallaron (1)" in detail
    assert "tienda_02: Pausada tras fallos repetidos hasta las" in detail
    second = int(answer.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, second)
    assert run is not None
    assert run.scope == ("tienda_01",)


def test_a_run_that_cannot_be_launched_is_failed_and_the_page_says_so(pages: Pages) -> None:
    pages.launcher.broken = True
    client = pages.login("trigger")
    answer = pages.post(client, "/runs/start", job="inventory", location="tienda_01")
    page = client.get(answer.headers["location"]).text
    run_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    assert (run.status, run.error_category) == (RunStatus.FAILED, "launch")
    assert "no pudo lanzarse" in page


def test_the_run_page_shows_each_location_its_error_and_filters_the_log(pages: Pages) -> None:
    run_id = _finished_run(
        pages, {"tienda_01": ItemStatus.SUCCEEDED, "tienda_02": ItemStatus.FAILED}
    )
    client = pages.login("read")
    page = client.get(f"/runs/{run_id}").text
    assert "KLK ventas: HTTP 503 Service Unavailable" in page
    assert "error HTTP" in page
    assert "parcial" in page
    filtered = client.get(f"/runs/{run_id}", params={"q": "tienda_02"}).text
    assert "1 de 2 líneas" in filtered
    assert "Repetir" not in page  # a read token is not offered what it may not do


def test_the_runs_page_filters_by_job_status_location_and_day(pages: Pages) -> None:
    failed = _finished_run(pages, {"tienda_04": ItemStatus.FAILED})
    with pages.engine.begin() as conn:
        other = ledger.create_run(
            conn, RunRequest(job=Job.INVENTORY, trigger=Trigger.API), now=pages.clock.now()
        ).run_id
    client = pages.login("read")
    rows = _run_rows(client.get("/runs").text)
    assert rows == [other, failed]
    assert _run_rows(client.get("/runs", params={"job": "sales"}).text) == [failed]
    assert _run_rows(client.get("/runs", params={"status": "queued"}).text) == [other]
    assert _run_rows(client.get("/runs", params={"location": "tienda_04"}).text) == [failed]
    assert _run_rows(client.get("/runs", params={"day": "2026-01-05"}).text) == [other, failed]
    assert _run_rows(client.get("/runs", params={"day": "2026-01-04"}).text) == []


def _run_rows(html: str) -> list[int]:
    return [int(part.split('"', 1)[0]) for part in html.split('data-run="')[1:]]


def test_a_missing_run_is_a_page_that_says_so(pages: Pages) -> None:
    answer = pages.login("read").get("/runs/999")
    assert answer.status_code == 404
    assert "No existe la ejecución 999." in answer.text


def test_the_language_switch_shows_english_and_back(pages: Pages) -> None:
    client = pages.login("read")
    pages.post(client, "/lang", lang="en", next="/runs")
    english = client.get("/runs").text
    assert '<html lang="en">' in english
    assert ">Overview<" in english
    pages.post(client, "/lang", lang="es", next="/runs")
    assert ">Resumen<" in client.get("/runs").text


def test_checking_the_locations_against_klk_keeps_the_result(pages: Pages) -> None:
    clock = ManualClock(pages.clock.now())
    world = SimWorld(locations=5, skus=10, lines_per_day=1, seed=1, clock=clock)
    with running_simulator(world) as url:
        pages.services.settings = Settings(klk_base_url=url, klk_retry_attempts=1)
        client = pages.login("trigger")
        answer = pages.post(client, "/locations/check")
    page = client.get(answer.headers["location"]).text
    assert "La verificación encontró" in page
    with pages.engine.connect() as conn:
        (entry,) = audit.entries(conn, action="locations.check")
    assert entry.actor == "trigger"
    problems = (entry.detail or {})["problems"]
    assert any("tienda_06" in problem for problem in problems)
    assert not any("tienda_01:" in problem for problem in problems)  # simulated: it matches
    assert "verificado por trigger" in page
