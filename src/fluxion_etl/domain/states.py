"""The one vocabulary of states and outcomes (SPEC §4): database, API, CLI, UI and metrics."""

from __future__ import annotations

from enum import StrEnum


class Job(StrEnum):
    INVENTORY = "inventory"
    SALES = "sales"
    RECONCILE = "reconcile"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


class ItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED_BUSY = "skipped_busy"
    SKIPPED_OPEN_CIRCUIT = "skipped_open_circuit"

    @property
    def is_final(self) -> bool:
        return self not in (ItemStatus.PENDING, ItemStatus.RUNNING)


class FireOutcome(StrEnum):
    STARTED = "started"
    DUPLICATE = "duplicate"
    SKIPPED_DISABLED = "skipped_disabled"
    SKIPPED_INACTIVE_HOURS = "skipped_inactive_hours"
    MISSED = "missed"


class ErrorCategory(StrEnum):
    NETWORK = "network"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    ERROR_BODY = "error_body"
    BAD_PAYLOAD = "bad_payload"
    COUNT_MISMATCH = "count_mismatch"
    MASS_DELETION_HELD = "mass_deletion_held"
    DATABASE = "database"
    LAUNCH = "launch"
    DEADLINE = "deadline"
    WORKER_LOST = "worker_lost"  # the process executing the run died or stopped heartbeating
    BUSY = "busy"  # another run held every location this run was to load


class ErrorPhase(StrEnum):
    EXTRACT = "extract"
    TRANSFORM = "transform"
    LOAD = "load"


class Trigger(StrEnum):
    """Who started a run; every trigger goes through the same runner (SPEC §4.1)."""

    SCHEDULE = "schedule"
    API = "api"
    CLI = "cli"
    RECOVERY = "recovery"
    RECONCILE = "reconcile"
    BACKFILL = "backfill"
