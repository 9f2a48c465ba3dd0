"""What the pages compute before rendering: cell states, bars, log filters, opening hours, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fluxion_etl.config import load_config
from fluxion_etl.domain.states import ItemStatus, Job
from fluxion_etl.engine.freshness import Freshness
from fluxion_etl.store.ledger import ItemRow, LogRow
from fluxion_etl.web.i18n import Translator
from fluxion_etl.web.pages.locations import opening_summary
from fluxion_etl.web.pages.overview import cell_state
from fluxion_etl.web.pages.runs import filter_logs, not_succeeded, phase_bars
from fluxion_etl.web.render import Fmt

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def _verdict(
    *, stale: bool, open_now: bool, last: datetime | None, judged: bool = True
) -> Freshness:
    return Freshness(
        location_id="tienda_01",
        job=Job.SALES,
        last_success_at=last,
        age_seconds=None,
        threshold_seconds=6000,
        required_since=NOW - timedelta(hours=1) if judged else None,
        open_now=open_now,
        stale=stale,
    )


def test_a_cell_is_fresh_closed_stale_or_not_judged() -> None:
    recent = NOW - timedelta(minutes=5)
    assert cell_state(_verdict(stale=False, open_now=True, last=recent)) == "fresh"
    assert cell_state(_verdict(stale=False, open_now=False, last=recent)) == "closed"
    assert cell_state(_verdict(stale=True, open_now=True, last=recent)) == "stale"
    assert cell_state(_verdict(stale=True, open_now=True, last=None)) == "stale"  # never synced
    assert cell_state(_verdict(stale=False, open_now=False, last=recent, judged=False)) == "unknown"


def _item(location_id: str, status: ItemStatus, ms: tuple[int, int, int]) -> ItemRow:
    return ItemRow(
        id=1, run_id=1, location_id=location_id, status=status, fetched=0, inserted=0,
        updated=0, unchanged=0, deleted=0, held=0, duplicates=0, extract_ms=ms[0],
        transform_ms=ms[1], load_ms=ms[2], windows=None, started_at=None, finished_at=None,
        error_category=None, error_phase=None, error_message=None,
    )  # fmt: skip


def test_phase_bars_are_shares_of_the_slowest_location() -> None:
    items = [
        _item("a", ItemStatus.SUCCEEDED, (600, 200, 200)),
        _item("b", ItemStatus.FAILED, (250, 0, 0)),
    ]
    bars = phase_bars(items)
    assert (bars["a"].extract, bars["a"].transform, bars["a"].load) == (60, 20, 20)
    assert bars["b"].extract == 25
    assert not_succeeded(items) == ["b"]
    assert phase_bars([_item("c", ItemStatus.PENDING, (0, 0, 0))])["c"].extract == 0


def test_the_log_filter_matches_event_location_and_fields_in_any_case() -> None:
    lines = [
        LogRow(1, 1, NOW, "info", "tienda_01", "sales loaded", {"fetched": 40}),
        LogRow(2, 1, NOW, "error", "tienda_02", "location failed", {"category": "http_status"}),
        LogRow(3, 1, NOW, "info", None, "run finished", None),
    ]
    assert [line.id for line in filter_logs(lines, "TIENDA_02", "")] == [2]
    assert [line.id for line in filter_logs(lines, "http_status", "")] == [2]
    assert [line.id for line in filter_logs(lines, "", "info")] == [1, 3]
    assert [line.id for line in filter_logs(lines, "  ", "")] == [1, 2, 3]


def test_opening_hours_are_grouped_by_runs_of_equal_days() -> None:
    bosque = load_config(None).location("tienda_08")  # open until midnight
    assert opening_summary(bosque) == [("mon", "sun", "07:00-24:00")]


def test_times_are_written_in_the_zone_with_its_offset_and_ages_in_words() -> None:
    fmt = Fmt(Translator("es"), NOW)
    caracas = ZoneInfo("America/Caracas")
    assert ">05/01 10:00 -04<" in fmt.time(NOW, caracas)
    assert ">10:00:00 -04<" in fmt.time(NOW, "America/Caracas", day=False, seconds=True)
    assert fmt.age(NOW - timedelta(minutes=12)) == "hace 12 min"
    assert fmt.age(None) == "nunca sincronizada"
    assert Fmt(Translator("en"), NOW).age(NOW - timedelta(hours=2)) == "2 h 00 min ago"
    assert fmt.span(3 * 86400 + 3600) == "3 d 1 h"
    assert fmt.ms(1500) == "1,5 s"
