"""A scheduled sales window re-reads the hour before it (the overlap); the lines KLK sends exactly
as a stored line was loaded from (their fingerprints) are counted unchanged, not decoded nor
loaded again. What is stored and the counters are what decoding every line gives
(``klk.decode._changed_lines``, ``store.sales_loader.known_lines``)."""

from __future__ import annotations

import pytest
from engine_support import (
    STORES,
    TODAY,
    Chain,
    assert_sales_equal_served,
    sales_stamps,
)

from fluxion_etl.domain.states import Job, RunStatus
from fluxion_etl.store import sales_loader


def _today_window(outcome_windows: list[dict[str, object]] | None) -> dict[str, object]:
    windows = [w for w in outcome_windows or [] if w["day"] == TODAY.isoformat()]
    assert len(windows) == 1
    return windows[0]


def test_the_overlap_is_counted_not_decoded_and_stored_as_served(chain: Chain) -> None:
    first = chain.run(Job.SALES)
    stamps = {loc: sales_stamps(chain.engine, loc) for loc in STORES}
    chain.clock.advance(minutes=30)  # the stores sell on

    second = chain.run(Job.SALES)

    assert {first.status, second.status} == {RunStatus.SUCCEEDED}
    kept_somewhere = False
    for loc in STORES:
        window = _today_window(second.items[loc].windows)
        item = second.items[loc]
        sent = int(str(window["lines"]))
        decoded = int(str(window.get("decoded", sent)))
        assert item.fetched == sent
        assert item.unchanged >= sent - decoded, "every kept line counts as unchanged"
        assert item.unchanged == item.fetched - item.inserted - item.updated - item.duplicates
        assert item.inserted == len(sales_stamps(chain.engine, loc)) - len(stamps[loc])
        assert item.updated == 0
        kept_somewhere |= decoded < sent
        after = sales_stamps(chain.engine, loc)
        assert {key: after[key] for key in stamps[loc]} == stamps[loc], "no line rewritten"
        assert_sales_equal_served(chain, loc, [TODAY])
    assert kept_somewhere, "the overlap's lines were sent again and kept"


def test_another_release_decodes_every_line_and_rewrites_none(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release that decodes differently has another seed: nothing stored matches, every line
    is decoded and compared, and the lines whose values did not change are not written."""
    chain.run(Job.SALES)
    stamps = {loc: sales_stamps(chain.engine, loc) for loc in STORES}
    real = sales_loader.fingerprint_seed

    def next_release(**kwargs: str) -> int:
        return real(**kwargs) ^ 0x5A5A

    monkeypatch.setattr(sales_loader, "fingerprint_seed", next_release)
    again = chain.run(Job.SALES)

    assert again.status is RunStatus.SUCCEEDED
    assert sum(again.items[loc].fetched for loc in STORES) > 0, "the overlap was sent again"
    for loc in STORES:
        window = _today_window(again.items[loc].windows)
        assert "decoded" not in window, "every line decoded"
        item = again.items[loc]
        assert (item.inserted, item.updated) == (0, 0)
        assert item.unchanged == item.fetched
        assert sales_stamps(chain.engine, loc) == stamps[loc]
