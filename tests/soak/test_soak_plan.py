"""The soak's pure parts: the fault plan drawn from a seed, the pace of its clock, the shared
clock file, and the history-chain rule. Fast; the soak itself runs in test_soak_short.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from fluxion_etl.domain.clock import FileClock, clock_from_spec
from fluxion_etl.sim.faults import parse_faults
from fluxion_etl.soak.check_data import _chain_problem
from fluxion_etl.soak.modes import FAULTS_FROM, FAULTS_UNTIL, LONG, SHORT, local
from fluxion_etl.soak.plan import OUTAGES, ActionKind, KlkKind, draw_plan
from fluxion_etl.soak.timekeeper import CRAWL, Backlog, Timekeeper, pace_for
from fluxion_etl.soak.verdict import EXAMPLES, Findings


@pytest.mark.parametrize("seed", [1, 7, 2026])
def test_every_fault_kind_and_action_is_planned_in_every_soak(seed: int) -> None:
    plan = draw_plan(SHORT, seed, hang_seconds=9)
    assert {f.kind for f in plan.klk} == set(KlkKind)
    assert {a.kind for a in plan.actions} == set(ActionKind)


def test_the_same_seed_draws_the_same_plan_and_another_seed_another() -> None:
    assert draw_plan(SHORT, 5, hang_seconds=9) == draw_plan(SHORT, 5, hang_seconds=9)
    assert draw_plan(SHORT, 5, hang_seconds=9) != draw_plan(SHORT, 6, hang_seconds=9)


@pytest.mark.parametrize("seed", range(20))
def test_faults_stay_within_the_fault_hours_and_parse_as_simulator_faults(seed: int) -> None:
    plan = draw_plan(SHORT, seed, hang_seconds=9)
    day = SHORT.timeline().faults_from.date()
    for fault in plan.klk:
        assert local(day, FAULTS_FROM) <= fault.since < fault.until <= local(day, FAULTS_UNTIL)
    parsed = parse_faults(plan.klk_specs())
    assert len(parsed) == len(plan.klk)
    for action in plan.actions:
        assert local(day, FAULTS_FROM) <= action.at < local(day, FAULTS_UNTIL)


@pytest.mark.parametrize("seed", range(20))
def test_outages_of_one_day_hit_different_locations(seed: int) -> None:
    """The simulator answers a call with the first due outage only: overlapping ones on one
    location would leave the others never injected."""
    plan = draw_plan(SHORT, seed, hang_seconds=9)
    outages = [f for f in plan.klk if f.kind in OUTAGES]
    assert len({f.location for f in outages}) == len(outages)


def test_the_long_mode_spreads_extra_faults_over_thirty_days() -> None:
    plan = draw_plan(LONG, 3, hang_seconds=9)
    days = {a.at.date() for a in plan.actions} | {f.since.date() for f in plan.klk}
    assert len(days) > 20
    assert len(plan.klk) > len(KlkKind)
    assert len(plan.actions) > len(ActionKind)


def test_the_clock_runs_at_full_speed_only_while_the_service_keeps_up() -> None:
    calm = Backlog(in_flight=2, longest_wait=timedelta(minutes=5))
    assert pace_for(calm) == 1.0
    assert pace_for(Backlog(3, timedelta(0))) < 1.0
    assert pace_for(Backlog(9, timedelta(0))) == CRAWL
    assert pace_for(Backlog(1, timedelta(minutes=30))) < 1.0
    assert pace_for(Backlog(1, timedelta(hours=2))) == CRAWL
    assert 0 < pace_for(None) < 1.0


def test_a_file_clock_reads_the_time_the_timekeeper_publishes(tmp_path: Path) -> None:
    start = datetime(2026, 1, 5, 9, 40, tzinfo=UTC)
    keeper = Timekeeper(tmp_path / "clock", start, 600.0, lambda: Backlog(0, timedelta(0)))
    reader = clock_from_spec(keeper.spec())
    assert isinstance(reader, FileClock)
    assert reader.speed == 600.0
    assert reader.now() == start  # standing still until released
    keeper.start_running()
    keeper.release()
    try:
        keeper.sleep(60)
        assert reader.now() >= start + timedelta(seconds=60)
        assert keeper.now() >= reader.now() - timedelta(seconds=30)
    finally:
        keeper.stop()


def test_a_file_clock_never_goes_backwards(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    path.write_text("1000.0")
    clock = FileClock(str(path), 10.0)
    first = clock.now()
    path.write_text("900.0")
    assert clock.now() == first


D = Decimal


@pytest.mark.parametrize(
    ("chain", "current", "problem"),
    [
        ([("appeared", None, D(5)), ("changed", D(5), D(3))], D(3), None),
        ([("changed", D(5), D(3))], D(3), "first row"),
        ([("appeared", None, D(5)), ("changed", D(5), D(5))], D(5), "no change"),
        ([("appeared", None, D(5)), ("changed", D(5), D(3)), ("changed", D(5), D(3))], D(3),
         "starts at"),
        ([("appeared", None, D(5))], D(4), "current stock"),
        ([("appeared", None, D(5)), ("disappeared", D(5), None), ("appeared", None, D(2))], D(2),
         None),
    ],
)  # fmt: skip
def test_history_must_be_one_row_per_real_change(
    chain: list[tuple[str, Decimal | None, Decimal | None]],
    current: Decimal,
    problem: str | None,
) -> None:
    found = _chain_problem(chain, current)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_findings_name_the_invariant_and_cap_the_examples() -> None:
    findings = Findings()
    for n in range(EXAMPLES + 3):
        findings.fail("no_lease_held", f"lease {n}")
    findings.fail("caught_up", "tienda_01")
    assert findings.failed_invariants == ["caught_up", "no_lease_held"]
    lines = findings.lines()
    assert sum("no_lease_held" in line for line in lines) == EXAMPLES + 1
    assert lines[-1].endswith("and 3 more like these")
