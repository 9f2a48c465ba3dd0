"""The benchmark harness at a tiny scale, so it cannot rot between benchmark runs.

These check that every benchmark runs end to end and reports what docs/BENCHMARKS.md quotes; they
assert no timing (the figures come from ``make bench-*`` on a quiet machine, not from CI).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bench import common, cycle, growth, load, peers, service

pytestmark = pytest.mark.slow


def _require_postgres() -> None:
    try:
        engine = create_engine(common.PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
    except Exception:
        if os.environ.get("FLUXION_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "PostgreSQL on 127.0.0.1:5432 is required (FLUXION_TEST_REQUIRE_POSTGRES=1)"
            )
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")


def _measured(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_load_benchmark_times_every_contender_in_every_phase(dialect: str) -> None:
    if dialect == "postgresql":
        _require_postgres()
    report = load.run("tiny", [dialect], repeats=1, with_dlt=peers.dlt_available())

    contenders = {c for (_t, c, _p) in report.results[dialect]}
    assert "ours" in contenders
    assert ("baseline COPY + merge" in contenders) == (dialect == "postgresql")
    for (target, contender, phase), values in report.results[dialect].items():
        assert len(values) == 1, (target, contender, phase)
        assert _measured(values[0]), (target, contender, phase)
    assert report.counts["sales first"] == 2 * 1 * 40
    assert report.targets(), "the target ratios are computed"
    assert "| ours |" in report.markdown()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_interleaved_load_benchmark_times_ours_beside_its_target(dialect: str) -> None:
    if dialect == "postgresql":
        _require_postgres()
    report = load.run("tiny", [dialect], repeats=1, with_dlt=False, interleave=True)

    other = "baseline COPY + merge" if dialect == "postgresql" else "executemany upsert"
    assert {c for (_t, c, _p) in report.results[dialect]} == {"ours", other}
    for key, values in report.results[dialect].items():
        assert len(values) == 1, key
        assert _measured(values[0]), key
    assert len(report.targets()) == 4


def test_cycle_benchmark_runs_a_cold_and_a_steady_cycle_through_the_simulator() -> None:
    report = cycle.run("tiny", "sqlite")

    cold, steady = report.cycles["cold"], report.cycles["steady"]
    assert cold["inventory_rows"] == 3 * 100  # three locations, one catalogue each
    assert cold["sales_rows"] > 0
    assert cold["inventory_wall_s"] > 0
    assert steady["inventory_rows"] == 3 * 100
    assert _measured(cold["peak_rss_mb"])
    assert _measured(report.simulator_peak_mb)
    assert _measured(report.simulator["cold_cached"]["seconds"])
    assert "ETL peak memory" in report.markdown()


def test_cycle_benchmark_times_the_baseline_on_the_rows_a_cycle_loaded() -> None:
    _require_postgres()
    report = cycle.run("tiny", "postgresql")

    assert report.baseline_s is not None
    assert _measured(report.baseline_s)
    against = report.against_baseline()
    assert set(against) == {"cold", "steady"}
    for name in ("cold", "steady"):
        assert _measured(against[name]["wall_x"]), name
        assert against[name]["wall_x"] > 0, name
    for runs in report.baselines.values():  # the steady part reloads every article again
        assert runs["steady_rows"] >= report.cycles["steady"]["inventory_rows"]
    assert "cold cycle / baseline" in report.markdown()
    assert "steady cycle / baseline" in report.markdown()


def test_growth_benchmark_grows_locations_and_history() -> None:
    _require_postgres()
    report = growth.run([2, 3], 2_000, skus=30, lines=20, history_locations=3, repeats=1)

    assert sorted(report.by_locations) == [2, 3]
    assert report.by_locations[3]["cold"]["inventory_rows"] == 3 * 30
    assert len(report.incremental["empty"]) == len(report.incremental["history"]) == 1
    assert "Incremental sales cycle" in report.markdown()


def test_service_benchmark_finds_one_run_per_idempotency_key() -> None:
    report = service.run(
        service.Options("sqlite", clients=8, requests=2, keys=3, fire_count=0, idle_seconds=0.5)
    )

    assert sum(report.answers.statuses.values()) == 16
    assert set(report.answers.statuses) <= {200, 202, 409}
    # At most one run per key: a key whose first call finds tienda_01 held by another key's run
    # is answered 409 instead, so how many keys get one depends on how the calls interleave.
    assert 1 <= report.runs_created <= 3
    assert all(len(ids) == 1 for ids in report.answers.run_ids.values())
    assert report.duplicates == 0
    assert report.idle_cpu is not None
    assert "duplicate runs" in report.markdown()


def test_service_benchmark_repeats_bursts_each_with_runs_of_its_own() -> None:
    report = service.run(
        service.Options(
            "sqlite", clients=8, requests=2, keys=3, fire_count=0, idle_seconds=0, repeats=2
        )
    )

    (contender,) = report.contenders
    assert [sum(burst.statuses.values()) for burst in contender.bursts] == [16, 16]
    # Each burst's keys are its own, so each creates runs of its own: at most one per key (a
    # key whose first call finds tienda_01 held by an earlier key's run is answered 409).
    first, second = ({i for ids in b.run_ids.values() for i in ids} for b in contender.bursts)
    assert first
    assert second
    assert first.isdisjoint(second)
    assert len(first) + len(second) == report.runs_created <= 2 * 3
    assert report.duplicates == 0
    assert "p99 of the first burst" in report.markdown()


def test_service_benchmark_drives_the_pool_launcher() -> None:
    report = service.run(
        service.Options(
            "sqlite", clients=8, requests=2, keys=3, fire_count=0, idle_seconds=0,
            launchers=("pool",),
        )
    )  # fmt: skip

    (contender,) = report.contenders
    assert contender.label == "pool launcher"
    assert report.runs_created >= 1
    assert report.duplicates == 0


def test_process_cpu_counts_live_children() -> None:
    """A pool's workers are children that never exit while it serves: their CPU counts."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.5\n"
         "while time.process_time() < end: pass\ntime.sleep(30)"]
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (spent := service.process_cpu_seconds(child.pid)) < 0.4:
            assert time.monotonic() < deadline, "the child did not spend its CPU"
            time.sleep(0.1)
        assert service.process_cpu_seconds(os.getpid()) - _own_cpu() >= spent
    finally:
        child.kill()
        child.wait()


def _own_cpu() -> float:
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
