"""The command-line contract through real processes: exit 1 when a run ended partial or failed (a
KLK that cannot be reached is a failure, never "0 rows, success"), 2 for bad input, with a
one-line error that says what to fix and nothing written. (Exit 0 and the kill -9 behaviour of
the same command: test_engine_crash.py, on both dialects.)"""

from __future__ import annotations

import signal
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from engine_cli import Finished, cli_chain, closed_port_url, finish, one_line, table_counts
from engine_support import (
    CARACAS,
    D1,
    D2,
    LOCATIONS,
    NOW,
    STORES,
    Outcome,
    assert_sales_equal_served,
    build_world,
    chain_config,
    fast_settings,
    latest_run,
    outcome,
)
from sqlalchemy import Engine, text

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ErrorCategory, ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit
from fluxion_etl.errors import BadInputError
from fluxion_etl.sim.faults import parse_faults
from fluxion_etl.store import ledger

CLOSED = datetime(2025, 11, 17, 22, 0, tzinfo=CARACAS)
"""After closing time: no sale happens while real time runs during the test."""


def _runs(engine: Engine) -> list[ledger.RunRow]:
    with engine.connect() as conn:
        return ledger.list_runs(conn)


@pytest.mark.slow
@pytest.mark.timeout(600)  # process starts: minutes on a saturated shared machine
@pytest.mark.parametrize("migrated_url", ["sqlite"], indirect=True)
def test_exit_codes_and_errors_of_the_command(migrated_url: str, tmp_path: Path) -> None:
    """SQLite only: each case is a whole process start (seconds of CPU on this shared machine)
    and none depends on the dialect; what does is checked in process on both, below, and by the
    kill -9 test, which runs the command on both."""
    with cli_chain(migrated_url, tmp_path, CLOSED) as cli:
        chain = cli.chain
        bad = {  # started together; each is a whole process start
            "FLUXION_KLK_BASE_URL": cli.launch("run", "inventory", FLUXION_KLK_BASE_URL="htp:/x"),
            "unknown location 'tienda_99'": cli.launch("run", "sales", "-l", "tienda_99"),
            f"start {D2} is after end {D1}": cli.launch(
                "run", "sales", "--from", str(D2), "--to", str(D1)
            ),
            "46 days requested; at most 31": cli.launch(
                "run", "sales", "--from", "2025-10-01", "--to", str(D1)
            ),
            "--from: required when --to is given": cli.launch("run", "sales", "--to", str(D1)),
        }
        unreachable = cli.launch("run", "inventory", FLUXION_KLK_BASE_URL=closed_port_url())
        refused = {fix: finish(process) for fix, process in bad.items()}
        down = finish(unreachable)
        after_refusals = table_counts(chain.engine)
        down_runs = _runs(chain.engine)
        chain.plan.replace(parse_faults("sales@tienda_02:http_500"))
        partial = cli.run("run", "sales", "--from", str(D1), "--to", str(D2))
        partial_run = latest_run(chain.engine)

        for fix, result in refused.items():
            assert result.returncode == 2, str(result)
            line = one_line(result.stderr)
            assert line.startswith("error: "), line
            assert fix in line, line
        assert down.returncode == 1, str(down)
        assert [r.status for r in down_runs] == [RunStatus.FAILED], "bad input wrote no run"
        down_items = outcome(chain.engine, down_runs[0].id).items
        assert set(down_items) == set(LOCATIONS)
        assert {(i.status, i.error_category) for i in down_items.values()} == {
            (ItemStatus.FAILED, ErrorCategory.NETWORK)
        }
        assert "network" in down.stdout
        nothing = {"sales_lines": 0, "inventory_current": 0, "sales_coverage": 0, "leases": 0}
        assert {t: after_refusals[t] for t in nothing} == nothing
        assert after_refusals["run_items"] == len(LOCATIONS), "only the unreachable run's items"
        assert partial.returncode == 1, str(partial)
        assert partial_run.status is RunStatus.PARTIAL
        failed = partial_run.items["tienda_02"]
        assert (failed.status, failed.error_category) == (
            ItemStatus.FAILED,
            ErrorCategory.HTTP_STATUS,
        )
        for loc in STORES:
            if loc != "tienda_02":
                assert partial_run.items[loc].status is ItemStatus.SUCCEEDED
                assert_sales_equal_served(chain, loc, [D1, D2])


@pytest.mark.parametrize(
    ("request_fields", "fix"),
    [
        ({"job": Job.SALES, "locations": ("tienda_99",)}, "unknown location 'tienda_99'"),
        ({"job": Job.SALES, "locations": ("cedi_caracas",)}, "has no sales"),
        ({"job": Job.SALES, "date_from": D2, "date_to": D1}, f"start {D2} is after end {D1}"),
        (
            {"job": Job.SALES, "date_from": date(2025, 10, 1), "date_to": D1},
            "46 days requested; at most 31",
        ),
        ({"job": Job.SALES, "date_from": D1}, "give both the start and the end date"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    engine: Engine, request_fields: dict[str, Any], fix: str
) -> None:
    clock = ManualClock(NOW)
    config = chain_config(build_world(clock))
    request = RunRequest(trigger=Trigger.CLI, **request_fields)

    with pytest.raises(BadInputError) as refused:
        submit(
            engine,
            request,
            config=config,
            settings=fast_settings(str(engine.url), "http://127.0.0.1:9"),
            clock=clock,
        )

    assert fix in str(refused.value)
    assert "\n" not in str(refused.value)
    assert set(table_counts(engine).values()) == {0}, "nothing written"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_interrupted_run_finishes_what_it_loads_and_a_second_interrupt_abandons_it(
    migrated_url: str, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT) on ``run``: no run is left ``running`` until its lease expires."""
    if not migrated_url.startswith("sqlite"):
        pytest.skip("a whole process per case; nothing here depends on the dialect")
    with cli_chain(migrated_url, tmp_path, CLOSED) as cli:
        chain = cli.chain
        chain.plan.replace(list(parse_faults("catalogue@*:latency=0.5")))

        def interrupted(times: int) -> tuple[Finished, Outcome]:
            known = {r.id for r in _runs(chain.engine)}
            process = cli.launch("run", "inventory")
            deadline = time.monotonic() + 120
            run_id = None
            while time.monotonic() < deadline:  # until its first location is loaded
                new = [r.id for r in _runs(chain.engine) if r.id not in known]
                run_id = new[0] if new else None
                items = outcome(chain.engine, run_id).items.values() if run_id else ()
                if any(i.status is ItemStatus.SUCCEEDED for i in items):
                    break
                time.sleep(0.05)
            for _ in range(times):
                process.send_signal(signal.SIGINT)
                time.sleep(0.2)
            assert run_id is not None
            return finish(process), outcome(chain.engine, run_id)

        once, stopped = interrupted(1)
        twice, abandoned = interrupted(2)

    assert once.returncode == 1, once
    assert "stopping; the locations loading finish" in once.stderr
    assert stopped.status in (RunStatus.PARTIAL, RunStatus.FAILED)
    statuses = [i.status for i in stopped.items.values()]
    assert ItemStatus.SUCCEEDED in statuses
    assert ItemStatus.FAILED in statuses
    assert all(
        "before this location started; left for the next run" in (i.error_message or "")
        for i in stopped.items.values()
        if i.status is ItemStatus.FAILED
    )
    assert twice.returncode == 130, twice
    assert abandoned.status is RunStatus.ABANDONED
    assert abandoned.run.error_message == "interrupted from the command line"
    with chain.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leases")).scalar_one() == 0
