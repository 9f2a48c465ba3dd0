"""Gaps: opening hours minus final coverage, from the start of a location's history, per local day
(both dialects), and how recovery plans them."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta

import pytest
from ops_support import CARACAS, TODAY, local
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig, parse_config
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, Trigger
from fluxion_etl.errors import BadInputError
from fluxion_etl.ops.gaps import LocationGap, list_gaps, summarize
from fluxion_etl.ops.recover import plan_recovery
from fluxion_etl.store import ledger
from fluxion_etl.store.coverage import add_coverage

YESTERDAY = TODAY - timedelta(days=1)
CONFIG = """
[[locations]]
id = "tienda_01"
name = "PERIFERICO"
branch_code = "SUC001"
warehouses = [{ code = "APP-TPF", role = "sales_floor" }]

[[locations]]
id = "tienda_08"
name = "BOSQUE"
branch_code = "SUC002"
warehouses = [{ code = "APP-TBQ", role = "sales_floor" }]
opening_hours = { default = "07:00-24:00", sun = "closed" }

[[locations]]
id = "cedi_caracas"
name = "CEDI"
kind = "distribution_centre"
warehouses = [{ code = "PCDICS", role = "principal" }]
"""


@pytest.fixture
def config() -> ChainConfig:
    return parse_config(tomllib.loads(CONFIG), "<gap tests>")


def cover(
    engine: Engine, location_id: str, start: datetime, end: datetime, *, provisional: bool = False
) -> None:
    with engine.begin() as conn:
        add_coverage(
            conn,
            location_id=location_id,
            start=start,
            end=end,
            provisional=provisional,
            run_id=None,
            now=end,
        )


def gaps_at(
    engine: Engine, config: ChainConfig, now: datetime, **kwargs: object
) -> list[LocationGap]:
    with engine.connect() as conn:
        return list_gaps(conn, config, now=now, **kwargs)  # type: ignore[arg-type]


def spans(gaps: list[LocationGap]) -> list[tuple[str, datetime, datetime, bool]]:
    return [(g.location_id, g.start, g.end, g.provisional) for g in gaps]


def test_a_hole_in_the_opening_hours_is_a_gap_and_closed_hours_are_not(
    engine: Engine, config: ChainConfig
) -> None:
    cover(engine, "tienda_01", local(YESTERDAY, 0), local(TODAY, 10))
    cover(engine, "tienda_01", local(TODAY, 12), local(TODAY, 23))
    cover(engine, "tienda_08", local(YESTERDAY, 0), local(TODAY + timedelta(days=1), 0))

    found = gaps_at(engine, config, local(TODAY, 23, 59) + timedelta(days=1))

    # tienda_01: 10:00-12:00 today, then tomorrow's whole opening (nothing covers it yet)
    assert spans(found) == [
        ("tienda_01", local(TODAY, 10), local(TODAY, 12), False),
        (
            "tienda_01",
            local(TODAY + timedelta(days=1), 7),
            local(TODAY + timedelta(days=1), 21),
            False,
        ),
        (
            "tienda_08",
            local(TODAY + timedelta(days=1), 7),
            local(TODAY + timedelta(days=1), 23, 14),
            False,
        ),
    ]
    assert found[0].day == TODAY
    assert found[0].seconds == 2 * 3600


def test_a_stretch_read_as_empty_while_open_is_a_provisional_gap(
    engine: Engine, config: ChainConfig
) -> None:
    cover(engine, "tienda_01", local(TODAY, 0), local(TODAY, 9))
    cover(engine, "tienda_01", local(TODAY, 9), local(TODAY, 11), provisional=True)
    cover(engine, "tienda_01", local(TODAY, 11), local(TODAY, 22))

    found = gaps_at(engine, config, local(TODAY, 22), location_id="tienda_01")

    assert spans(found) == [("tienda_01", local(TODAY, 9), local(TODAY, 11), True)]


def test_time_before_the_first_synced_range_and_the_settle_margin_are_not_gaps(
    engine: Engine, config: ChainConfig
) -> None:
    cover(engine, "tienda_01", local(TODAY, 14), local(TODAY, 15))

    found = gaps_at(engine, config, local(TODAY, 16), location_id="tienda_01")

    # history begins at 14:00; 15:00-15:15 is missing; the last 45 minutes wait for a run
    assert spans(found) == [("tienda_01", local(TODAY, 15), local(TODAY, 15, 15), False)]


def test_a_location_never_synced_has_no_gaps(engine: Engine, config: ChainConfig) -> None:
    assert gaps_at(engine, config, local(TODAY, 16)) == []


def test_days_a_backfill_asked_for_and_never_loaded_are_gaps(
    engine: Engine, config: ChainConfig
) -> None:
    """The store's backfill of three days failed, today's sync succeeded: those days are gaps,
    though nothing before today was ever loaded (SPEC §4.9: a store that lost days)."""
    asked = TODAY - timedelta(days=3)
    with engine.begin() as conn:
        request = RunRequest(
            job=Job.SALES, trigger=Trigger.BACKFILL, locations=("tienda_01",),
            date_from=asked, date_to=YESTERDAY, requested_by="ops",
        )  # fmt: skip
        run_id = ledger.create_run(conn, request, now=local(TODAY, 8)).run_id
        ledger.create_items(conn, run_id, ["tienda_01"])
        ledger.finish_item(conn, run_id, "tienda_01", ItemStatus.FAILED, now=local(TODAY, 8))
    cover(engine, "tienda_01", local(TODAY, 0), local(TODAY, 16))

    found = gaps_at(engine, config, local(TODAY, 16), location_id="tienda_01")

    assert sorted({g.day for g in found}) == [asked, asked + timedelta(days=1), YESTERDAY]
    assert gaps_at(engine, config, local(TODAY, 16), location_id="tienda_08") == []


def test_only_the_last_n_local_days_are_judged(engine: Engine, config: ChainConfig) -> None:
    start = local(TODAY - timedelta(days=5), 0)
    cover(engine, "tienda_01", start, start + timedelta(hours=1))

    days = {g.day for g in gaps_at(engine, config, local(TODAY, 23), days=2)}

    assert days == {YESTERDAY, TODAY}
    all_days = {g.day for g in gaps_at(engine, config, local(TODAY, 23), days=14)}
    assert min(all_days) == TODAY - timedelta(days=5)


def test_a_gap_across_local_midnight_is_cut_per_day(engine: Engine, config: ChainConfig) -> None:
    twenty_four_seven = CONFIG.replace('"07:00-24:00", sun = "closed"', '"00:00-24:00"')
    config = parse_config(tomllib.loads(twenty_four_seven), "<24h>")
    cover(engine, "tienda_08", local(YESTERDAY, 0), local(YESTERDAY, 22))
    cover(engine, "tienda_08", local(TODAY, 2), local(TODAY, 12))

    found = gaps_at(engine, config, local(TODAY, 12, 45), location_id="tienda_08")

    assert [(g.day, g.start, g.end) for g in found] == [
        (YESTERDAY, local(YESTERDAY, 22), local(TODAY, 0)),
        (TODAY, local(TODAY, 0), local(TODAY, 2)),
    ]


def test_unknown_locations_and_a_distribution_centre_are_refused(
    engine: Engine, config: ChainConfig
) -> None:
    with pytest.raises(BadInputError, match="unknown location 'tienda_99'"):
        gaps_at(engine, config, local(TODAY, 12), location_id="tienda_99")
    with pytest.raises(BadInputError, match="has no sales"):
        gaps_at(engine, config, local(TODAY, 12), location_id="cedi_caracas")
    with pytest.raises(BadInputError, match="days"):
        gaps_at(engine, config, local(TODAY, 12), days=0)


def gap(location_id: str, day: date, provisional: bool = False) -> LocationGap:
    start = datetime.combine(day, datetime.min.time(), tzinfo=CARACAS) + timedelta(hours=9)
    return LocationGap(location_id, start, start + timedelta(hours=1), day, provisional)


def test_recovery_plans_one_range_per_location_within_the_maximum_span() -> None:
    day = date(2025, 11, 1)
    gaps = [gap("a", day), gap("a", day + timedelta(days=2)), gap("a", day + timedelta(days=9))]
    gaps += [gap("b", day + timedelta(days=1), provisional=True)]

    plans = plan_recovery(gaps, max_range_days=5)

    assert [(p.location_id, p.date_from, p.date_to, len(p.gap_days)) for p in plans] == [
        ("a", day, day + timedelta(days=2), 2),
        ("b", day + timedelta(days=1), day + timedelta(days=1), 1),
        ("a", day + timedelta(days=9), day + timedelta(days=9), 1),
    ]


def test_summaries_count_gaps_and_read_empty_time_per_location() -> None:
    day = date(2025, 11, 1)
    summary = summarize([gap("a", day), gap("a", day, provisional=True), gap("b", day)])

    assert summary["a"].count == 2
    assert summary["a"].seconds == 7200
    assert summary["a"].provisional_seconds == 3600
    assert summary["b"].days == (day,)
