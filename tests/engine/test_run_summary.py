"""A run's final category and message: they describe the same failure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fluxion_etl.domain.states import ErrorCategory, ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.engine.runner import _final_status
from fluxion_etl.store.ledger import ItemRow, RunRow

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
RUN = RunRow(
    id=1, job=Job.SALES, status=RunStatus.RUNNING, trigger=Trigger.API, requested_by="test",
    scope=None, date_from=None, date_to=None, params={}, idempotency_key=None,
    schedule_name=None, scheduled_for=None, launcher=None, external_ref=None, owner="me",
    created_at=NOW, started_at=NOW, heartbeat_at=NOW, deadline_at=NOW + timedelta(hours=1),
    finished_at=None, cancel_requested=False, error_category=None, error_message=None,
)  # fmt: skip
ITEM = ItemRow(
    id=0, run_id=1, location_id="", status=ItemStatus.SUCCEEDED, fetched=0, inserted=0,
    updated=0, unchanged=0, deleted=0, held=0, duplicates=0, extract_ms=0, transform_ms=0,
    load_ms=0, windows=None, started_at=NOW, finished_at=NOW, error_category=None,
    error_phase=None, error_message=None,
)  # fmt: skip


def item(location_id: str, category: ErrorCategory | None = None) -> ItemRow:
    if category is None:
        return replace(ITEM, location_id=location_id)
    status = ItemStatus.SKIPPED_BUSY if category is ErrorCategory.BUSY else ItemStatus.FAILED
    message = f"{category.value} at {location_id}"
    return replace(
        ITEM, location_id=location_id, status=status, error_category=category,
        error_message=message,
    )  # fmt: skip


def summary(items: list[ItemRow]) -> tuple[RunStatus, str | None, str | None]:
    statuses = {i.location_id: i.status for i in items}
    return _final_status(RUN, items, statuses, NOW, cancelled=False)


def test_the_message_names_a_location_that_failed_for_the_run_category() -> None:
    items = [
        item("tienda_01"),
        item("tienda_02", ErrorCategory.HTTP_STATUS),
        item("tienda_03", ErrorCategory.BAD_PAYLOAD),
        item("tienda_04", ErrorCategory.BAD_PAYLOAD),
    ]

    status, category, message = summary(items)

    assert (status, category) == (RunStatus.PARTIAL, ErrorCategory.BAD_PAYLOAD)
    assert message == "3 of 4 locations not loaded; tienda_03: bad_payload at tienda_03"


def test_the_most_frequent_real_category_wins_over_busy_and_ties_go_by_name() -> None:
    busy_mostly = [
        item("tienda_01", ErrorCategory.BUSY),
        item("tienda_02", ErrorCategory.BUSY),
        item("tienda_03", ErrorCategory.TIMEOUT),
        item("tienda_04", ErrorCategory.NETWORK),
    ]
    only_busy = [item("tienda_01", ErrorCategory.BUSY), item("tienda_02")]

    assert summary(busy_mostly)[1:] == (
        ErrorCategory.NETWORK,
        "4 of 4 locations not loaded; tienda_04: network at tienda_04",
    )
    assert summary(only_busy)[1] == ErrorCategory.BUSY
