"""The configured locations, and how fresh each one's data is (SPEC §4.12)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.api.deps import Reader, Services
from fluxion_etl.api.schemas import (
    ErrorAnswer,
    FreshnessAnswer,
    FreshnessOut,
    LocationOut,
    WarehouseOut,
)
from fluxion_etl.domain.records import Location
from fluxion_etl.engine import freshness
from fluxion_etl.store import sync_state

router = APIRouter(prefix="/api/etl", tags=["locations"])

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "No valid bearer token."},
    403: {"model": ErrorAnswer, "description": "The token's scope is too small."},
    503: {"model": ErrorAnswer, "description": "The database is not reachable."},
}


@router.get("/locations", response_model=list[LocationOut], responses=ANSWERS)
def list_locations(services: Services, caller: Reader) -> list[LocationOut]:
    """The locations of the configuration file, with the jobs each one has."""
    return [location_out(loc) for loc in services.config.locations]


@router.get("/freshness", response_model=FreshnessAnswer, responses=ANSWERS)
def get_freshness(services: Services, caller: Reader) -> FreshnessAnswer:
    """Per active location and job: last success, its age, and whether it is stale."""
    return freshness_answer(services)


def freshness_answer(services: ServiceContext) -> FreshnessAnswer:
    with services.read_engine.connect() as conn:
        states = {(s.job.value, s.location_id): s for s in sync_state.all_states(conn)}
    now = services.clock.now()
    verdicts = freshness.judge_all(
        services.config.locations,
        {key: state.last_success_at for key, state in states.items()},
        now=now,
        deadlines=freshness.deadlines_from(services.settings.deadline_seconds),
        periods=services.schedule_periods() if services.schedule_periods else None,
    )
    items = []
    for verdict in verdicts:
        state = states.get((verdict.job.value, verdict.location_id))
        items.append(
            FreshnessOut(
                **asdict(verdict),
                last_error_category=state.last_error_category if state else None,
                last_error_message=state.last_error_message if state else None,
            )
        )
    return FreshnessAnswer(now=now, stale_count=sum(i.stale for i in items), items=items)


def location_out(loc: Location) -> LocationOut:
    return LocationOut(
        id=loc.id,
        name=loc.name,
        kind=loc.kind.value,
        branch_code=loc.branch_code,
        timezone=loc.timezone,
        region=loc.region,
        active=loc.active,
        jobs=list(freshness.jobs_of(loc)),
        warehouses=[
            WarehouseOut(code=w.code, role=w.role.value, name=w.name) for w in loc.warehouses
        ],
    )
