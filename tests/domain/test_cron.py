"""Cron fire times in a zone, and the written DST policy (America/New_York around both changes)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from fluxion_etl.domain.cron import (
    cron_fields,
    fires_between,
    next_fire,
    next_fires,
    previous_fire,
    validate_cron,
)
from fluxion_etl.errors import CronError

NY = "America/New_York"
CARACAS = "America/Caracas"


def local(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- the DST policy ----------------------------------------------------------------------------


def test_a_fire_time_skipped_by_spring_forward_runs_at_the_jump() -> None:
    times = next_fires("30 2 * * *", NY, utc(2026, 3, 7, 12), 3)
    assert [local(t, NY) for t in times] == [
        "2026-03-08 03:00 EDT",  # 02:30 does not exist that night: the next valid instant
        "2026-03-09 02:30 EDT",
        "2026-03-10 02:30 EDT",
    ]
    assert times[0] == utc(2026, 3, 8, 7)


def test_skipped_fire_times_collapse_into_one_fire_at_the_jump() -> None:
    times = list(fires_between("0,30 * * * *", NY, utc(2026, 3, 8, 5, 45), utc(2026, 3, 8, 8, 0)))
    assert [local(t, NY) for t in times] == [
        "2026-03-08 01:00 EST",
        "2026-03-08 01:30 EST",
        "2026-03-08 03:00 EDT",  # 02:00, 02:30 and 03:00 are one fire
        "2026-03-08 03:30 EDT",
        "2026-03-08 04:00 EDT",
    ]


def test_a_repeated_local_time_fires_once_at_its_first_occurrence() -> None:
    times = next_fires("30 1 * * *", NY, utc(2026, 10, 31, 12), 2)
    assert [local(t, NY) for t in times] == ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]


def test_a_half_hourly_schedule_does_not_fire_during_the_repeated_hour() -> None:
    times = list(fires_between("0,30 * * * *", NY, utc(2026, 11, 1, 4, 15), utc(2026, 11, 1, 8, 0)))
    assert [local(t, NY) for t in times] == [
        "2026-11-01 00:30 EDT",
        "2026-11-01 01:00 EDT",
        "2026-11-01 01:30 EDT",
        "2026-11-01 02:00 EST",  # 01:00 and 01:30 EST repeat local times already fired
        "2026-11-01 02:30 EST",
        "2026-11-01 03:00 EST",
    ]
    assert all(b - a >= timedelta(minutes=30) for a, b in pairwise(times))


def test_counting_from_inside_the_repeated_hour_does_not_fire_it_again() -> None:
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10 EST, after 01:00 and 01:30 EDT fired
    assert local(next_fire("0,30 * * * *", NY, second_pass), NY) == "2026-11-01 02:00 EST"
    assert local(previous_fire("0,30 * * * *", NY, second_pass), NY) == "2026-11-01 01:30 EDT"


def test_fire_times_keep_local_wall_clock_across_the_change() -> None:
    times = next_fires("0 3 * * *", NY, utc(2026, 3, 6, 12), 4)
    assert {t.astimezone(ZoneInfo(NY)).hour for t in times} == {3}
    assert [t.hour for t in times] == [8, 7, 7, 7]  # UTC moves by the hour the clocks moved


def test_caracas_has_no_dst_so_local_is_always_utc_minus_four() -> None:
    times = list(fires_between("0,30 * * * *", CARACAS, utc(2026, 1, 1), utc(2027, 1, 1)))
    assert len(times) == 365 * 48
    assert {(t.astimezone(ZoneInfo(CARACAS)).utcoffset()) for t in times} == {timedelta(hours=-4)}


# --- ranges and previous ------------------------------------------------------------------------


def test_fires_between_is_half_open_excluding_the_start() -> None:
    start = utc(2026, 1, 5, 14, 0)  # 10:00 Caracas, itself a fire time
    times = list(fires_between("0,30 * * * *", CARACAS, start, start + timedelta(hours=1)))
    assert times == [start + timedelta(minutes=30), start + timedelta(hours=1)]


def test_previous_fire_includes_the_instant_itself() -> None:
    at = utc(2026, 1, 5, 7, 0)  # 03:00 Caracas
    assert previous_fire("0 3 * * *", CARACAS, at) == at
    assert previous_fire("0 3 * * *", CARACAS, at - timedelta(seconds=1)) == at - timedelta(days=1)


def test_previous_fire_of_a_skipped_time_is_the_jump() -> None:
    jump = utc(2026, 3, 8, 7)  # 03:00 EDT
    assert previous_fire("30 2 * * *", NY, jump + timedelta(minutes=5)) == jump


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        next_fire("0 * * * *", CARACAS, datetime(2026, 1, 1))


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 * * * *", "seconds"),
        ("* * * *", "has 4 fields"),
        ("@daily", "aliases"),
        ("0 0 15W * *", "W (nearest weekday)"),
        ("H * * * *", "hashed"),
        ("0 24 * * *", "out of range"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 * FOO *", "'FOO' is not allowed"),
        ("*/0 * * * *", "step"),
        ("", "has 0 fields"),
        ("5-5 * * * *", "the range '5-5' has one value"),  # croniter would read it as '*'
        ("0 0 5 * 1#2", "cannot be combined with a day of month"),
    ],
)
def test_invalid_expressions_are_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)) as caught:
        validate_cron(expression)
    assert caught.value.expression == expression


def test_whitespace_is_normalised_and_names_are_accepted() -> None:
    assert validate_cron("  0   7-20 *  * MON-FRI ") == "0 7-20 * * MON-FRI"
    assert cron_fields("0 7-20 * JAN,JUL MON-FRI").days_of_week == (1, 2, 3, 4, 5)
    assert cron_fields("0 0 * * 7").days_of_week == (0,)


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(CronError, match="IANA"):
        next_fire("0 * * * *", "Mars/Olympus", utc(2026, 1, 1))


def test_the_domain_imports_no_io_frameworks() -> None:
    code = (
        "import sys, fluxion_etl.domain.cron, fluxion_etl.domain.schedules, "
        "fluxion_etl.domain.exports, fluxion_etl.domain.schedule_hours\n"
        "io = ('fastapi', 'typer', 'sqlalchemy', 'httpx', 'boto3')\n"
        "bad = [m for m in io if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
