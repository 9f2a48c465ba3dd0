"""The run log keeps its lines in the database in batches: warnings and errors at once (with the
lines before them), the rest within a second or at ``flush``; in order, within the per-run limit,
and never failing the run when the database cannot take them (``engine.runlog``)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from test_ledger import T0, running_run

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.engine.runlog import RunLog
from fluxion_etl.store import ledger


def _events(engine: Engine, run_id: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(line.level, line.event) for line in ledger.read_logs(conn, run_id)]


def _log(engine: Engine, run_id: int, **kwargs: float) -> RunLog:
    return RunLog(engine, ManualClock(T0), run_id=run_id, job="sales", max_lines=100, **kwargs)


def test_info_lines_wait_for_a_warning_or_a_flush_and_keep_their_order(engine: Engine) -> None:
    run_id = running_run(engine)
    log = _log(engine, run_id, flush_seconds=3600)

    log.info("location started", "tienda_01")
    log.info("sales loaded", "tienda_01", inserted=3)
    before_warning = _events(engine, run_id)
    log.warning("skipped: location busy", "tienda_02")
    log.info("location started", "tienda_03")
    before_flush = _events(engine, run_id)
    log.flush()

    assert before_warning == []
    assert before_flush == [
        ("info", "location started"),
        ("info", "sales loaded"),
        ("warning", "skipped: location busy"),
    ]
    assert _events(engine, run_id) == [*before_flush, ("info", "location started")]
    with engine.connect() as conn:
        lines = ledger.read_logs(conn, run_id)
    assert (lines[1].location_id, lines[1].fields) == ("tienda_01", {"inserted": 3})


def test_lines_are_written_once_the_interval_has_passed(engine: Engine) -> None:
    run_id = running_run(engine)
    log = _log(engine, run_id, flush_seconds=0)

    log.info("run started")

    assert _events(engine, run_id) == [("info", "run started")]


def test_batches_stay_within_the_limit_and_mark_the_cut_once(engine: Engine) -> None:
    run_id = running_run(engine)
    log = RunLog(engine, ManualClock(T0), run_id=run_id, job="sales", max_lines=3)

    for n in range(2):
        log.info(f"line {n}")
    log.flush()
    for n in range(2, 6):
        log.info(f"line {n}")
    log.flush()
    log.error("later error")

    events = _events(engine, run_id)
    assert [e for _, e in events[:3]] == ["line 0", "line 1", "line 2"]
    assert len(events) == 4
    assert events[3][0] == "warning"
    assert "limit of 3 lines" in events[3][1]


def test_a_database_that_cannot_take_the_lines_does_not_fail_the_caller(engine: Engine) -> None:
    run_id = running_run(engine)
    gone = create_engine("sqlite:////nonexistent-dir/fluxion.db")
    log = RunLog(gone, ManualClock(T0), run_id=run_id, job="sales", max_lines=10)

    log.error("something failed")  # written at once: the write fails, quietly
    log.flush()

    assert _events(engine, run_id) == []
