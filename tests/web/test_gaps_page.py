"""The gaps page: coverage per location and day as the ledger holds it; recovery from a click."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pages_support import Pages

from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.store import audit, coverage, ledger

CARACAS = ZoneInfo("America/Caracas")


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=CARACAS)


def _cover(
    pages: Pages, location_id: str, start: datetime, end: datetime, *, tentative: bool
) -> None:
    with pages.engine.begin() as conn:
        coverage.add_coverage(
            conn, location_id=location_id, start=start, end=end, provisional=tentative,
            run_id=None, now=pages.clock.now(),
        )  # fmt: skip


def _cells(html: str, location_id: str) -> dict[str, tuple[str, str]]:
    """The calendar row of ``location_id``: day → (state, text)."""
    row = html.split(f'<tr data-location="{location_id}">', 1)[1].split("</tr>", 1)[0]
    found = re.findall(r'class="cov cov-(\w+)" data-day="([\d-]+)"[^>]*>\s*([^<]*?)\s*</td>', row)
    return {day: (state, text) for state, day, text in found}


def test_the_calendar_shows_each_day_full_partial_provisional_missing_or_unjudged(
    pages: Pages,
) -> None:
    # The clock is Monday 5 January, 10:00 in Caracas; the stores open 07:00-21:00.
    _cover(pages, "tienda_01", _local(2, 0), _local(3, 14), tentative=False)
    _cover(pages, "tienda_02", _local(4, 0), _local(4, 12), tentative=False)
    _cover(pages, "tienda_02", _local(4, 12), _local(5, 10), tentative=True)
    html = pages.login("read").get("/gaps").text
    first = _cells(html, "tienda_01")
    assert first["2026-01-01"] == ("unjudged", "·")  # before its history: not a gap
    assert first["2026-01-02"] == ("full", "100")
    assert first["2026-01-03"] == ("partial", "50")  # 07:00-14:00 of 07:00-21:00
    assert first["2026-01-04"] == ("none", "0")
    assert first["2026-01-05"][0] == "none"  # judged up to 09:15 (the last 45 min settle)
    second = _cells(html, "tienda_02")
    assert second["2026-01-04"] == ("provisional", "35")  # 07:00-12:00 final, the rest read empty
    assert second["2026-01-05"] == ("provisional", "0")
    assert _cells(html, "tienda_03")["2026-01-05"] == ("unjudged", "·")  # never synced
    rows = re.findall(r'<tr class="gap-row" data-day="([\d-]+)">', html)
    assert rows == ["2026-01-03", "2026-01-04", "2026-01-05", "2026-01-04", "2026-01-05"]


def test_recovering_one_gap_starts_a_recovery_of_that_day_by_the_token(pages: Pages) -> None:
    _cover(pages, "tienda_01", _local(2, 0), _local(3, 14), tentative=False)
    client = pages.login("trigger")
    answer = pages.post(client, "/gaps/recover", location="tienda_01", day="2026-01-04")
    run_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    assert (run.job, run.trigger, run.scope) == (Job.SALES, Trigger.RECOVERY, ("tienda_01",))
    assert (run.date_from, run.date_to) == (date(2026, 1, 4), date(2026, 1, 4))
    assert run.requested_by == "trigger"
    assert pages.launcher.launched == [run_id]


def test_recovering_all_gaps_starts_one_recovery_per_location_and_audits_it(pages: Pages) -> None:
    _cover(pages, "tienda_01", _local(2, 0), _local(3, 14), tentative=False)
    _cover(pages, "tienda_02", _local(4, 0), _local(4, 12), tentative=False)
    client = pages.login("trigger")
    answer = pages.post(client, "/gaps/recover")
    assert answer.headers["location"] == "/gaps"
    assert "Recuperación en marcha: 2 ejecuciones nuevas" in client.get("/gaps").text
    with pages.engine.connect() as conn:
        runs = ledger.list_runs(conn, trigger="recovery")
        (entry,) = audit.entries(conn, action="gaps.recover")
    assert sorted((r.scope, r.date_from, r.requested_by) for r in runs) == [
        (("tienda_01",), date(2026, 1, 3), "trigger"),
        (("tienda_02",), date(2026, 1, 4), "trigger"),
    ]
    assert sorted(pages.launcher.launched) == sorted(r.id for r in runs)
    assert (entry.actor, entry.target) == ("trigger", "gaps:all")
    again = pages.post(client, "/gaps/recover")  # both still in flight: none submitted twice
    assert "0 ejecuciones nuevas" in client.get(again.headers["location"]).text
