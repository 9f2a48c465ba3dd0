"""The stale rule (SPEC §4.12): older than two periods plus the deadline, judged while open and once
after closing. Times below are Caracas local (UTC-4); a store opens 07:00-21:00 unless noted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fluxion_etl.config import parse_spans
from fluxion_etl.domain.records import (
    Location,
    LocationKind,
    OpeningHours,
    Warehouse,
    WarehouseRole,
)
from fluxion_etl.domain.states import Job
from fluxion_etl.engine import freshness

CARACAS = ZoneInfo("America/Caracas")
DEADLINE = timedelta(minutes=20)  # threshold = 2 x 30 min + 20 min = 80 min


def store(hours: str = "07:00-21:00", *, sales: bool = True, active: bool = True) -> Location:
    return Location(
        id="tienda_01",
        name="PERIFERICO",
        kind=LocationKind.STORE if sales else LocationKind.DISTRIBUTION_CENTRE,
        branch_code="SUC001" if sales else None,
        warehouses=(Warehouse("APP-TPF", WarehouseRole.SALES_FLOOR),),
        timezone="America/Caracas",
        opening_hours=OpeningHours(tuple(parse_spans(hours) for _ in range(7))),
        active=active,
    )


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """2026-01-<day> hh:mm in Caracas, as UTC."""
    return datetime(2026, 1, day, hour, minute, tzinfo=CARACAS).astimezone(UTC)


def stale(location: Location, last: datetime | None, now: datetime, **kw: timedelta) -> bool:
    return freshness.judge(
        location, Job.INVENTORY, last_success_at=last, now=now, deadline=DEADLINE, **kw
    ).stale


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        (local(6, 11, 0), local(6, 12, 0), False),  # open, 60 min old
        (local(6, 10, 40), local(6, 12, 0), False),  # exactly the threshold
        (local(6, 10, 39), local(6, 12, 0), True),  # open, 81 min old
        (local(5, 21, 10), local(6, 7, 30), False),  # just opened: last night's close is enough
        (local(5, 20, 0), local(6, 7, 30), True),  # just opened: nothing after last close
        (local(6, 20, 50), local(6, 21, 30), False),  # just closed: the rule keeps sliding
        (local(6, 20, 0), local(6, 21, 30), True),
        (local(6, 21, 5), local(7, 3, 0), False),  # night: a success after closing is all it takes
        (local(6, 20, 55), local(7, 3, 0), True),  # night: the day's last sales are not in
    ],
)
def test_stale_is_judged_while_open_and_once_after_closing(
    last: datetime, now: datetime, expected: bool
) -> None:
    assert stale(store(), last, now) is expected


def test_a_location_that_never_succeeded_is_stale() -> None:
    verdict = freshness.judge(
        store(), Job.SALES, last_success_at=None, now=local(6, 12), deadline=DEADLINE
    )

    assert verdict.stale
    assert verdict.age_seconds is None


def test_a_store_open_all_day_is_judged_straight_through_midnight() -> None:
    """Touching day spans are one stretch: midnight is not an "opening" with a grace period."""
    always = store("00:00-24:00")

    assert stale(always, local(5, 23, 0), local(6, 0, 30))
    assert not stale(always, local(5, 23, 30), local(6, 0, 30))


def test_a_store_closing_at_midnight_is_checked_after_midnight() -> None:
    bosque = store("07:00-24:00")

    assert stale(bosque, local(5, 23, 50), local(6, 3, 0))
    assert not stale(bosque, local(6, 0, 5), local(6, 3, 0))


def test_a_location_never_open_is_never_judged_stale() -> None:
    verdict = freshness.judge(
        store("closed"),
        Job.INVENTORY,
        last_success_at=local(1, 12),
        now=local(6, 12),
        deadline=DEADLINE,
    )

    assert not verdict.stale
    assert verdict.required_since is None


def test_the_period_is_a_parameter_for_the_real_schedule() -> None:
    hourly = {"period": timedelta(hours=1)}  # threshold 2 h 20 min

    assert not stale(store(), local(6, 10, 0), local(6, 12, 0), **hourly)
    assert stale(store(), local(6, 9, 30), local(6, 12, 0), **hourly)


def test_the_verdict_reports_age_threshold_and_whether_the_store_is_open() -> None:
    verdict = freshness.judge(
        store(),
        Job.INVENTORY,
        last_success_at=local(6, 11, 30),
        now=local(6, 12),
        deadline=DEADLINE,
    )

    assert verdict.age_seconds == 30 * 60
    assert verdict.threshold_seconds == 80 * 60
    assert verdict.open_now
    assert verdict.required_since == local(6, 10, 40)


def test_judge_all_covers_each_active_location_and_its_jobs() -> None:
    centre = Location(
        id="cedi",
        name="CEDI",
        kind=LocationKind.DISTRIBUTION_CENTRE,
        branch_code=None,
        warehouses=(Warehouse("PCDICS", WarehouseRole.PRINCIPAL),),
        timezone="America/Caracas",
        opening_hours=store().opening_hours,
    )
    inactive = store(active=False)
    verdicts = freshness.judge_all(
        [store(), centre, inactive],
        {("inventory", "cedi"): local(6, 11, 50)},
        now=local(6, 12),
        deadlines=dict.fromkeys(Job, DEADLINE),
    )

    assert [(v.location_id, v.job.value, v.stale) for v in verdicts] == [
        ("tienda_01", "inventory", True),
        ("tienda_01", "sales", True),
        ("cedi", "inventory", False),
    ]


def test_the_freshness_rule_needs_no_web_or_database_code() -> None:
    source = Path(freshness.__file__).read_text("utf-8")
    assert "sqlalchemy" not in source
    assert "fastapi" not in source
