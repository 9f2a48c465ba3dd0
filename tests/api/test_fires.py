"""Scheduler fires through the API (SPEC §4.2, §4.11, §6): a fire not to be started is answered 200
with its outcome (never retried), every fire is recorded once, and a repeat is a duplicate."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from api_support import NOW, Api
from httpx import Response
from sqlalchemy import func, select

from fluxion_etl.domain.schedules import ActiveHours, ScheduleDef
from fluxion_etl.domain.states import FireOutcome, Job
from fluxion_etl.store import schedules
from fluxion_etl.store.schema import runs

SYNC, SALES = "/api/etl/sync", "/api/etl/sync/ventas"


def fire(api: Api, schedule: str, at: datetime = NOW, path: str = SYNC) -> Response:
    headers = {
        **api.auth("trigger"),
        "X-Fluxion-Schedule": schedule,
        "X-Fluxion-Scheduled-Time": at.isoformat(),
    }
    return api.client.post(path, json={"ubicacion_id": None}, headers=headers)


def seed(api: Api, *extra: ScheduleDef) -> None:
    definitions = (*schedules.definitions_from_config(api.services.config), *extra)
    with api.services.engine.begin() as conn:
        schedules.seed_schedules(conn, definitions, NOW)


def recorded(api: Api, name: str, at: datetime = NOW) -> schedules.FireRow | None:
    with api.services.engine.connect() as conn:
        return schedules.get_fire(conn, name, at)


def run_count(api: Api) -> int:
    with api.services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def test_a_started_fire_is_recorded_with_its_run(api: Api) -> None:
    seed(api)

    answer = fire(api, "inventory")

    assert answer.status_code == 202
    row = recorded(api, "inventory")
    assert row is not None
    assert (row.outcome, row.run_id, row.source.value) == (
        FireOutcome.STARTED,
        answer.json()["run_id"],
        "external",
    )


def test_a_fire_of_a_disabled_schedule_is_answered_200_skipped_and_starts_nothing(api: Api) -> None:
    seed(api)
    with api.services.engine.begin() as conn:
        schedules.update_schedule(conn, "inventory", enabled=False, by="ana", now=NOW)

    answer = fire(api, "inventory")

    assert answer.status_code == 200
    body = answer.json()
    assert (body["success"], body["status"], body["fire_outcome"]) == (
        True,
        "skipped_disabled",
        "skipped_disabled",
    )
    assert body["run_id"] is None
    assert run_count(api) == 0
    row = recorded(api, "inventory")
    assert row is not None
    assert row.outcome is FireOutcome.SKIPPED_DISABLED


def test_a_fire_outside_the_active_hours_is_skipped(api: Api) -> None:
    seed(api)
    night_only = ActiveHours(time(22, 0), time(5, 0))  # NOW is 10:00 in Caracas
    with api.services.engine.begin() as conn:
        schedules.update_schedule(conn, "inventory", active_hours=night_only, by="ana", now=NOW)

    answer = fire(api, "inventory")

    assert (answer.status_code, answer.json()["status"]) == (200, "skipped_inactive_hours")
    assert "active hours" in answer.json()["message"]
    assert run_count(api) == 0


def test_a_fire_older_than_the_maximum_event_age_is_missed(api: Api) -> None:
    seed(api)
    late = NOW - timedelta(hours=1, minutes=30)  # a fire time, older than the hour allowed

    answer = fire(api, "inventory", at=late)

    assert (answer.status_code, answer.json()["status"]) == (200, "missed")
    assert run_count(api) == 0


def test_a_repeated_skipped_fire_is_a_duplicate(api: Api) -> None:
    seed(api)
    late = NOW - timedelta(hours=2)
    fire(api, "inventory", at=late)

    again = fire(api, "inventory", at=late)

    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert "missed" in again.json()["message"]


def test_a_repeated_started_fire_is_a_duplicate_of_its_run(api: Api) -> None:
    seed(api)
    at = NOW - timedelta(minutes=25)  # sales fire at :05 and :35
    first = fire(api, "sales", at=at, path=SALES).json()

    again = fire(api, "sales", at=at, path=SALES)

    assert again.status_code == 200
    assert (again.json()["status"], again.json()["run_id"]) == ("duplicate", first["run_id"])
    assert again.json()["run_status"] == "queued"


def test_a_schedule_not_seeded_yet_is_taken_from_the_configuration(api: Api) -> None:
    assert fire(api, "inventory").status_code == 202


def test_an_unknown_schedule_is_422_naming_the_header(api: Api) -> None:
    answer = fire(api, "payroll")

    assert answer.status_code == 422
    assert answer.json()["message"].startswith("X-Fluxion-Schedule: no schedule 'payroll'")


def test_a_fire_sent_to_the_other_jobs_route_is_422(api: Api) -> None:
    answer = fire(api, "sales", path=SYNC)

    assert answer.status_code == 422
    assert "/api/etl/sync/ventas" in answer.json()["message"]


def test_a_fire_for_all_locations_runs_over_its_schedules_locations(api: Api) -> None:
    two = ScheduleDef(
        "inventory-pair", Job.INVENTORY, "15 * * * *", locations=("tienda_01", "tienda_02")
    )
    seed(api, two)

    answer = fire(api, "inventory-pair", at=NOW - timedelta(minutes=45))

    with api.services.engine.connect() as conn:
        scope = conn.execute(
            select(runs.c.scope).where(runs.c.id == answer.json()["run_id"])
        ).scalar()
    assert scope == ["tienda_01", "tienda_02"]
