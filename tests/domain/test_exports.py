"""Exports: EventBridge expressions fire when the embedded scheduler does; crontab; refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from eventbridge_reference import EventBridgeCron
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from fluxion_etl.domain.cron import next_fires
from fluxion_etl.domain.exports import crontab, to_crontab_line, to_eventbridge
from fluxion_etl.domain.schedules import DEFAULT_SCHEDULES, ActiveHours, ScheduleDef
from fluxion_etl.domain.states import Job
from fluxion_etl.errors import CronError, InexpressibleError

INVENTORY, SALES, RECONCILE = DEFAULT_SCHEDULES
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def schedule(expression: str, zone: str = "America/Caracas", **kwargs: object) -> ScheduleDef:
    return ScheduleDef("s", Job.SALES, expression, timezone=zone, **kwargs)  # type: ignore[arg-type]


def eventbridge(expression: str) -> str:
    return to_eventbridge(schedule(expression)).expression


# --- EventBridge: examples ----------------------------------------------------------------------


def test_the_default_schedules_export_as_six_field_cron_in_caracas() -> None:
    exported = [to_eventbridge(s) for s in DEFAULT_SCHEDULES]
    assert [e.expression for e in exported] == [
        "cron(0,30 * * * ? *)",
        "cron(5,35 * * * ? *)",
        "cron(0 3 * * ? *)",
    ]
    assert {e.timezone for e in exported} == {"America/Caracas"}
    assert {e.state for e in exported} == {"ENABLED"}
    assert exported[0].notes == ()


def test_weekdays_are_renumbered_with_sunday_as_one() -> None:
    assert eventbridge("0 8 * * 1-5") == "cron(0 8 ? * 2-6 *)"
    assert eventbridge("0 8 * * 0") == "cron(0 8 ? * 1 *)"
    assert eventbridge("0 8 * * 7") == "cron(0 8 ? * 1 *)"
    assert eventbridge("0 8 * * SAT,SUN") == "cron(0 8 ? * 1,7 *)"


def test_weekday_steps_are_written_out_because_eventbridge_has_none() -> None:
    assert eventbridge("0 8 * * */2") == "cron(0 8 ? * 1,3,5,7 *)"


def test_day_of_month_last_day_and_nth_weekday_are_kept() -> None:
    assert eventbridge("0 4 L * *") == "cron(0 4 L * ? *)"
    assert eventbridge("0 4 * * 5#2") == "cron(0 4 ? * 6#2 *)"


def test_one_day_field_covering_every_day_makes_the_other_irrelevant() -> None:
    assert eventbridge("0 4 1-31 * 1") == "cron(0 4 * * ? *)"


def test_long_regular_lists_become_steps_and_short_ones_stay_lists() -> None:
    assert eventbridge("*/5 * * * *") == "cron(0/5 * * * ? *)"
    assert eventbridge("0 */2 * * *") == "cron(0 0/2 * * ? *)"
    assert eventbridge("0,20,40 6-9 * JAN,JUL *") == "cron(0,20,40 6-9 * 1,7 ? *)"


def test_a_disabled_schedule_exports_disabled_with_its_retry_policy() -> None:
    exported = to_eventbridge(replace(SALES, enabled=False, retry_attempts=5, locations=("a",)))
    data = exported.to_json()
    assert json.loads(json.dumps(data)) == data
    assert (data["state"], data["retry_attempts"], data["max_event_age_seconds"]) == (
        "DISABLED",
        5,
        3600,
    )
    assert data["locations"] == ["a"]


def test_a_zone_with_dst_carries_a_note_about_the_skipped_hour() -> None:
    exported = to_eventbridge(schedule("30 2 * * *", "America/New_York"))
    assert exported.timezone == "America/New_York"
    assert "skips fire times in the skipped spring hour" in exported.notes[0]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 1 * 1", "both day-of-month and day-of-week are restricted"),
        ("0 0 */2 * MON", "both day-of-month and day-of-week are restricted"),
        ("0 0 * * L5", "L in day-of-week"),
        ("0 0 * * 5#2,3#1", "several d#n"),
        ("0 0 1,L * *", "L cannot be part of a list"),
    ],
)
def test_inexpressible_schedules_are_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(InexpressibleError) as caught:
        eventbridge(expression)
    assert reason in caught.value.reason
    assert "EventBridge" in str(caught.value)


def test_long_lists_are_compressed_to_fit() -> None:
    every_other = ",".join(str(m) for m in range(0, 60, 2))
    hours = "1,3,5,7,9,11,13,15"  # a progression that stops before 23 stays a list
    assert eventbridge(f"{every_other} {hours} * * *") == f"cron(0/2 {hours} * * ? *)"


def test_a_seconds_field_is_refused_before_any_export() -> None:
    with pytest.raises(CronError, match="seconds"):
        schedule("0 0 12 * * *")


# --- EventBridge: the property ------------------------------------------------------------------


def field(lo: int, hi: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    number = st.integers(lo, hi)
    single = number.map(str) if not names else number.map(str) | st.sampled_from(names)
    span = st.tuples(number, number).map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = st.tuples(st.sampled_from(["*", f"{lo}-{hi}"]) | span, st.integers(1, hi - lo)).map(
        lambda bs: f"{bs[0]}/{bs[1]}"
    )
    listed = st.lists(single | span | step, min_size=1, max_size=3).map(",".join)
    return st.just("*") | listed


DAY_OF_MONTH = field(1, 31) | st.just("L") | st.just("?")
DAY_OF_WEEK = (
    field(0, 7, DAY_NAMES)
    | st.tuples(st.integers(0, 6), st.integers(1, 5)).map(lambda dn: f"{dn[0]}#{dn[1]}")
    | st.integers(0, 6).map(lambda d: f"L{d}")
    | st.just("1#1,3#2")
)
CRONS = st.tuples(
    field(0, 59), field(0, 23), DAY_OF_MONTH, field(1, 12, MONTH_NAMES), DAY_OF_WEEK
).map(" ".join)
STARTS = st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))


def valid_schedule(expression: str, zone: str) -> ScheduleDef:
    try:
        return schedule(expression, zone)
    except CronError:
        assume(False)
        raise  # unreachable: assume(False) stops the example


def assert_refusal_is_justified(expression: str, reason: str) -> None:
    """A refusal names a real difference between cron and EventBridge in this expression."""
    _, _, dom, _, dow = expression.split(" ")
    if "both day-of-month and day-of-week" in reason:
        assert dom not in ("*", "?"), expression
        assert dow != "*", expression
    elif "L in day-of-week" in reason:
        assert "L" in dow, expression
    elif "several d#n" in reason:
        assert dow.count("#") > 1, expression
    elif "L cannot be part of a list" in reason:
        assert "L" in dom, expression
        assert dom != "L", expression
    else:
        assert "characters" in reason, reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(expression=CRONS, start=STARTS, zone=st.sampled_from(["America/Caracas", "UTC"]))
def test_exported_expressions_fire_at_the_embedded_schedulers_instants(
    expression: str, start: datetime, zone: str
) -> None:
    definition = valid_schedule(expression, zone)
    try:
        exported = to_eventbridge(definition)
    except InexpressibleError as exc:
        assert_refusal_is_justified(expression, exc.reason)
        event(f"refused: {exc.reason.split(':')[0].split(' (')[0]}")
        return
    event("compared")
    ours = next_fires(definition.cron, zone, start, 20)
    theirs = list(islice(EventBridgeCron.parse(exported.expression).fires(zone, start), 20))
    assert ours == theirs, (expression, exported.expression)


@settings(max_examples=100, deadline=None)
@given(
    dom=st.lists(st.integers(1, 28), min_size=1, max_size=3, unique=True),
    dow=st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True),
)
def test_cron_restricting_both_day_fields_is_always_refused(dom: list[int], dow: list[int]) -> None:
    expression = f"0 0 {','.join(map(str, dom))} * {','.join(map(str, dow))}"
    with pytest.raises(InexpressibleError, match="both day-of-month and day-of-week"):
        eventbridge(expression)


TRANSITIONS = [datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    expression=st.tuples(field(0, 59), field(0, 23)).map(lambda mh: f"{mh[0]} {mh[1]} * * *"),
    start=st.sampled_from(TRANSITIONS),
    hours=st.integers(0, 36),
)
def test_in_a_dst_zone_they_differ_only_by_fires_of_skipped_local_times(
    expression: str, start: datetime, hours: int
) -> None:
    zone = "America/New_York"
    after = start + timedelta(hours=hours)
    definition = valid_schedule(expression, zone)
    reference = EventBridgeCron.parse(to_eventbridge(definition).expression)
    ours = next_fires(definition.cron, zone, after, 40)
    theirs = [t for t in islice(reference.fires(zone, after), 40) if t <= ours[-1]]
    extra = set(ours) - set(theirs)
    assert set(theirs) <= set(ours)
    tz = ZoneInfo(zone)
    for instant in extra:  # each one is the spring-forward jump, standing in for skipped times
        assert (
            instant.astimezone(tz).utcoffset()
            != (instant - timedelta(seconds=1)).astimezone(tz).utcoffset()
        )


# --- crontab ------------------------------------------------------------------------------------


def test_crontab_lines_call_the_cli_fire_command() -> None:
    assert to_crontab_line(INVENTORY, "America/Caracas").splitlines() == [
        "# inventory: inventory, 0,30 * * * * in America/Caracas",
        "0,30 * * * * fluxion-etl schedules fire inventory",
    ]


def test_crontab_in_another_zone_is_shifted_with_a_comment() -> None:
    lines = to_crontab_line(RECONCILE, "UTC", "/opt/fluxion/bin/fluxion-etl").splitlines()
    assert lines[-1] == "0 7 * * * /opt/fluxion/bin/fluxion-etl schedules fire sales-reconcile"
    assert "shifted +4 h to the machine zone UTC" in lines[1]


def test_crontab_shift_across_midnight_moves_the_weekdays() -> None:
    late = schedule("0 22 * * 1-5")  # weekdays 22:00 Caracas = Tuesday..Saturday 02:00 UTC
    assert to_crontab_line(late, "UTC").splitlines()[-1].startswith("0 2 * * 2-6 ")


def test_crontab_refuses_what_a_fixed_line_cannot_follow() -> None:
    with pytest.raises(InexpressibleError, match="changes its clocks"):
        to_crontab_line(schedule("0 3 * * *", "America/New_York"), "UTC")
    with pytest.raises(InexpressibleError, match="another day"):
        to_crontab_line(schedule("0 1,22 * * 0"), "UTC")
    with pytest.raises(InexpressibleError, match="no L"):
        to_crontab_line(schedule("0 1 L * *"), "America/Caracas")
    with pytest.raises(InexpressibleError, match="d#n"):
        to_crontab_line(schedule("0 1 * * 1#2"), "America/Caracas")


def test_crontab_keeps_cron_or_semantics_of_two_day_fields() -> None:
    line = to_crontab_line(schedule("0 1 */2 * 1"), "America/Caracas").splitlines()[-1]
    assert line.startswith("0 1 1-31/2 * 1 ")  # neither starts with '*': cron ORs them


def test_a_disabled_schedule_is_a_commented_line_and_active_hours_are_noted() -> None:
    limited = replace(SALES, enabled=False, active_hours=ActiveHours(time(7), time(21)))
    lines = to_crontab_line(limited, "America/Caracas").splitlines()
    assert lines[-1] == "# disabled: 5,35 * * * * fluxion-etl schedules fire sales"
    assert any("active hours 07:00-21:00" in line for line in lines)


def test_a_whole_crontab_has_a_header_and_every_schedule() -> None:
    text = crontab(DEFAULT_SCHEDULES, "UTC", on=date(2026, 1, 1))
    assert text.startswith("# fluxion-etl schedules")
    assert [
        line.split(" fluxion-etl ")[0] for line in text.splitlines() if "schedules fire" in line
    ] == [
        "0,30 * * * *",
        "5,35 * * * *",
        "0 7 * * *",
    ]
