"""``launchers.fail_unlaunched``: the one way every caller fails a run its launcher could not hand
off (the API's trigger, gap recovery and the control centre's buttons), on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ErrorCategory, Job, RunStatus, Trigger
from fluxion_etl.launchers import LaunchError, fail_unlaunched
from fluxion_etl.store import ledger

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def test_a_run_its_launcher_could_not_hand_off_fails_with_category_launch_and_the_reason(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        run_id = ledger.create_run(
            conn, RunRequest(job=Job.INVENTORY, trigger=Trigger.API), now=NOW
        ).run_id
    later = NOW + timedelta(seconds=1)

    reason = fail_unlaunched(
        engine, run_id, launcher="ecs", error=LaunchError("no capacity " * 300), now=later
    )

    assert reason.startswith("could not be launched by the ecs launcher: no capacity")
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    assert (run.status, run.error_category) == (RunStatus.FAILED, ErrorCategory.LAUNCH)
    assert run.error_message == reason[:2000]
    assert run.finished_at == later
