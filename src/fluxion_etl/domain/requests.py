"""What a caller asks for. Every trigger (schedule, API, CLI, recovery, reconcile, backfill) builds
one of these and hands it to the same runner (SPEC §4.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fluxion_etl.domain.states import Job, RunStatus, Trigger


@dataclass(frozen=True, slots=True)
class RunRequest:
    job: Job
    trigger: Trigger
    locations: tuple[str, ...] | None = None  # None: every active location that has the job
    date_from: date | None = None  # local dates, inclusive (sales backfill / reconcile)
    date_to: date | None = None
    requested_by: str | None = None  # token name or user, for audit
    idempotency_key: str | None = None
    schedule_name: str | None = None
    scheduled_for: datetime | None = None  # UTC-aware
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Answer to a submission: the run, and whether this call created it."""

    run_id: int
    created: bool
    status: RunStatus


@dataclass(frozen=True, slots=True)
class ItemCounters:
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    held: int = 0
    duplicates: int = 0

    def __add__(self, other: ItemCounters) -> ItemCounters:
        return ItemCounters(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )
