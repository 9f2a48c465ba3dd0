"""Request bodies and answers of the HTTP API (pydantic lives here, at the boundary, only).

The two trigger bodies and their answers keep the field names of the existing contract (SPEC §6):
``ubicacion_id``, ``fecha_inicio``, ``fecha_fin``, ``success``, ``message``, ``status``. Everything
new is in English. Unknown body fields are refused (``extra="forbid"``), so a typo is a 422 naming
the field rather than a silently ignored option.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
)

from fluxion_etl.domain.states import (
    ErrorCategory,
    ErrorPhase,
    FireOutcome,
    ItemStatus,
    Job,
    RunStatus,
    Trigger,
)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: object) -> object:
    """Only ``YYYY-MM-DD`` text: no timestamps, no datetimes silently cut to a date."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be a date written YYYY-MM-DD (a local date of the store)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date (YYYY-MM-DD)") from None


def _utc_instant(value: datetime) -> datetime:
    """The instant in UTC; one UTC cannot express (year 1 at +14:00) is refused, not a 500."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


UtcInstant = Annotated[AwareDatetime, AfterValidator(_utc_instant)]
LocalDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "example": "2026-01-05"}),
]


def printable(value: str | None) -> str | None:
    """Refuse control characters (NUL, tab, newline…): no location id or name has one, and
    PostgreSQL refuses a NUL in any text it is asked to compare."""
    if value is not None and any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("contains a control character (NUL, tab, newline…); remove it")
    return value


LocationId = Annotated[
    str, Field(min_length=1, max_length=64, examples=["tienda_01"]), AfterValidator(printable)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SyncBody(_Body):
    """``POST /api/etl/sync``: one location, or ``null`` for every active location."""

    ubicacion_id: LocationId | None = None


class SalesSyncBody(_Body):
    """``POST /api/etl/sync/ventas``: without dates, since each location's watermark; with
    ``fecha_inicio`` (and optionally ``fecha_fin``, default today), whole local days, inclusive."""

    ubicacion_id: LocationId | None = None
    fecha_inicio: LocalDate | None = None
    fecha_fin: LocalDate | None = None


class ReconcileBody(_Body):
    """``POST /api/etl/sync/reconcile``: re-read the previous ``days`` whole local days (default
    the configured 2) and remove lines KLK no longer returns, unless that is a mass deletion."""

    ubicacion_id: LocationId | None = None
    days: Annotated[StrictInt, Field(ge=1, le=31)] | None = None


class SyncAnswer(BaseModel):
    """``status`` stays ``"running"`` while the run is queued or running (what existing callers
    read); ``run_status`` is the run's exact state. A fire that was not started names its outcome
    in ``status`` and ``fire_outcome``."""

    success: bool
    message: str
    status: str
    ubicacion_id: str | None
    run_id: int | None = None
    run_status: RunStatus | None = None
    fire_outcome: FireOutcome | None = None


class SalesSyncAnswer(SyncAnswer):
    fecha_inicio: date | None = None
    fecha_fin: date | None = None


class FieldError(BaseModel):
    field: str
    rule: str


class ErrorAnswer(BaseModel):
    """Every error answer: ``message`` says what is wrong and, where it can, what to do."""

    success: bool = False
    message: str
    errors: list[FieldError] | None = None
    detail: Any = None


class Counters(BaseModel):
    fetched: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    held: int
    duplicates: int


class Timings(BaseModel):
    extract_ms: int
    transform_ms: int
    load_ms: int


class RunOut(BaseModel):
    id: int
    job: Job
    status: RunStatus
    trigger: Trigger
    requested_by: str | None
    scope: list[str] | None
    date_from: date | None
    date_to: date | None
    params: dict[str, Any]
    schedule_name: str | None
    scheduled_for: datetime | None
    launcher: str | None
    external_ref: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    deadline_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    cancel_requested: bool
    error_category: ErrorCategory | None
    error_message: str | None


class ItemOut(BaseModel):
    location_id: str
    status: ItemStatus
    counters: Counters
    timings: Timings
    windows: list[dict[str, Any]] | None
    started_at: datetime | None
    finished_at: datetime | None
    error_category: ErrorCategory | None
    error_phase: ErrorPhase | None
    error_message: str | None


class RunDetail(RunOut):
    items: list[ItemOut]
    totals: Counters


class RunsPage(BaseModel):
    runs: list[RunOut]
    limit: int
    offset: int
    next_offset: int | None  # None: this was the last page


class LogLine(BaseModel):
    id: int
    at: datetime
    level: str
    location_id: str | None
    event: str
    fields: dict[str, Any] | None


class LogsAnswer(BaseModel):
    """Follow a live run by polling with ``after_id`` = ``next_after_id``; ``finished`` is true
    when the run has ended and every line was returned."""

    run_id: int
    run_status: RunStatus
    lines: list[LogLine]
    next_after_id: int
    finished: bool


class CancelAnswer(BaseModel):
    success: bool
    message: str
    run_id: int
    run_status: RunStatus
    cancel_requested: bool


class WarehouseOut(BaseModel):
    code: str
    role: str
    name: str | None


class LocationOut(BaseModel):
    id: str
    name: str
    kind: str
    branch_code: str | None
    timezone: str
    region: str | None
    active: bool
    jobs: list[Job]
    warehouses: list[WarehouseOut]


class FreshnessOut(BaseModel):
    location_id: str
    job: Job
    last_success_at: datetime | None
    age_seconds: float | None
    threshold_seconds: float
    required_since: datetime | None
    open_now: bool
    stale: bool
    last_error_category: str | None = None
    last_error_message: str | None = None


class FreshnessAnswer(BaseModel):
    now: datetime
    stale_count: int
    items: list[FreshnessOut]


class HealthAnswer(BaseModel):
    status: str


class ReadyAnswer(BaseModel):
    ready: bool
    checks: dict[str, str]
