"""Validating and queueing a run request. A run is queued in the database first, then launched."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.requests import RunRequest, SubmitResult
from fluxion_etl.domain.states import Job
from fluxion_etl.errors import BadInputError
from fluxion_etl.klk.wire import FIRST_YEAR
from fluxion_etl.settings import Settings
from fluxion_etl.store import ledger

EARLIEST = date(FIRST_YEAR, 1, 1)
"""No sales day before this is asked of KLK (its lines dated earlier are corrupt, ``klk.wire``)."""


def validate_request(
    request: RunRequest, *, config: ChainConfig, settings: Settings, today: date
) -> None:
    """Bad input is refused before anything is written (SPEC: exit 2 / HTTP 422)."""
    for loc_id in request.locations or ():
        if not config.knows(loc_id):
            known = ", ".join(sorted(config.location_ids))
            raise BadInputError("location", f"unknown location {loc_id!r}; known: {known}")
        if request.job is not Job.INVENTORY and not config.location(loc_id).has_sales:
            raise BadInputError(
                "location", f"{loc_id} has no sales (a distribution centre has only inventory)"
            )
    _validate_range(request.date_from, request.date_to, settings.max_range_days, today)


def _validate_range(
    date_from: date | None, date_to: date | None, max_days: int, today: date
) -> None:
    if (date_from is None) != (date_to is None):
        raise BadInputError(
            "dates", "give both the start and the end date (local dates, inclusive)"
        )
    if date_from is None or date_to is None:
        return
    if date_from < EARLIEST:
        raise BadInputError(
            "dates",
            f"start {date_from} is before {EARLIEST}: KLK has no sales that old (the year?)",
        )
    if date_from > today:
        raise BadInputError("dates", f"start {date_from} is in the future (today is {today})")
    if date_from > date_to:
        raise BadInputError("dates", f"start {date_from} is after end {date_to}")
    span = (date_to - date_from).days + 1
    if span > max_days:
        raise BadInputError(
            "dates", f"{span} days requested; at most {max_days} per request (split the range)"
        )


def submit(
    engine: Engine,
    request: RunRequest,
    *,
    config: ChainConfig,
    settings: Settings,
    clock: Clock,
    launcher: str | None = None,
) -> SubmitResult:
    """Validate and queue; a repeated idempotency key returns the existing run."""
    from fluxion_etl.domain.windows import local_date

    zone = config.locations[0].zone if config.locations else None
    today = local_date(clock.now(), zone) if zone else clock.now().date()
    validate_request(request, config=config, settings=settings, today=today)
    with engine.begin() as conn:
        return ledger.create_run(conn, request, now=clock.now(), launcher=launcher)
