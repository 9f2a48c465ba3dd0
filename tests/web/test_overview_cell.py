"""An overview cell says a location is failing when its last attempt failed, whatever succeeded
before: a load of past days only (a backfill, a recovery) is a success, not a fresh one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fluxion_etl.domain.states import ErrorCategory, Job
from fluxion_etl.store.sync_state import SyncStateRow
from fluxion_etl.web.pages.overview import Cell

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def cell(**state: Any) -> Cell:
    sync = SyncStateRow(
        job=Job.SALES, location_id="tienda_01", watermark=None,
        last_success_at=state.get("last_success_at"), last_success_run_id=None,
        last_attempt_at=state.get("last_attempt_at"),
        consecutive_failures=state.get("consecutive_failures", 0), circuit_open_until=None,
        last_error_category=state.get("last_error_category"), last_error_message=None,
    )  # fmt: skip
    return Cell(
        location=None, job=Job.SALES, state="stale", verdict=None, sync=sync, running_run=None
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "failing"),
    [
        # failed after its last success
        ({"last_error_category": ErrorCategory.TIMEOUT, "consecutive_failures": 2}, True),
        # an old failure, then a backfill of past days: a success, though not a fresh one
        (
            {
                "last_error_category": ErrorCategory.TIMEOUT,
                "consecutive_failures": 0,
                "last_success_at": NOW - timedelta(hours=5),
                "last_attempt_at": NOW,
            },
            False,
        ),
        ({"last_error_category": None, "consecutive_failures": 0}, False),
    ],
)
def test_failing_follows_the_failures_since_the_last_success(
    state: dict[str, Any], failing: bool
) -> None:
    assert cell(**state).failing is failing
