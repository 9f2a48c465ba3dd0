"""Decoding a sales window against the lines already stored: the lines sent exactly as a stored
line was loaded from (same fingerprint) are counted, not decoded; the others are decoded as in a
whole decode. Whenever that could differ from decoding every line, every line is decoded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from klk_builders import sale, sales_body, with_part

from fluxion_etl.domain.records import KnownLines, SalesBatch
from fluxion_etl.errors import KlkBadPayloadError, KlkCountMismatchError
from fluxion_etl.klk.decode import decode_sales

ZONE = ZoneInfo("America/Caracas")
SEED = 12345


def _sales(count: int = 10) -> list[dict[str, Any]]:
    return [sale("C10-01-00000001", line) for line in range(1, count + 1)]


def _decode(
    items: list[dict[str, Any]],
    known: KnownLines | None = None,
    *,
    seed: int | None = SEED,
    total: int | None = None,
) -> SalesBatch:
    body = sales_body(items, total=total)
    if known is None:
        return decode_sales(body, warehouse_code="APP-TPF", zone=ZONE, seed=seed)
    return decode_sales(body, warehouse_code="APP-TPF", zone=ZONE, seed=seed, known=lambda: known)


def _held(batch: SalesBatch) -> KnownLines:
    """What a load of ``batch`` (decoded whole) left stored."""
    assert batch.kept == 0
    by_fingerprint = {line.fingerprint: line.key for line in batch.lines}
    assert None not in by_fingerprint
    return KnownLines(by_fingerprint=by_fingerprint)  # type: ignore[arg-type]


FIRST = _decode(_sales())
HELD = _held(FIRST)


def test_every_line_carries_the_fingerprint_of_its_bytes_and_the_seed() -> None:
    again = _decode(_sales())
    other_seed = _decode(_sales(), seed=SEED + 1)
    items = _sales()
    items[2] = with_part(items[2], "cantidad", cantidad_vendida=Decimal(4))
    moved = _decode(items)

    assert [line.fingerprint for line in again.lines] == [line.fingerprint for line in FIRST.lines]
    assert len({line.fingerprint for line in FIRST.lines}) == len(FIRST.lines)
    assert all(-(2**63) <= line.fingerprint < 2**63 for line in FIRST.lines)  # type: ignore[operator]
    differing = [
        a.line_number
        for a, b in zip(FIRST.lines, moved.lines, strict=True)
        if a.fingerprint != b.fingerprint
    ]
    assert differing == [3]
    assert not {line.fingerprint for line in other_seed.lines} & {
        line.fingerprint for line in FIRST.lines
    }
    assert all(line.fingerprint is None for line in _decode(_sales(), seed=None).lines)


def test_only_the_new_and_changed_lines_are_decoded() -> None:
    items = _sales(12)  # two new lines at the end
    items[4] = with_part(items[4], "financiero", venta_total_usd=Decimal("9.5"))

    partial = _decode(items, HELD)
    whole = _decode(items)

    assert [line.line_number for line in partial.lines] == [5, 11, 12]
    assert partial.kept == 9
    assert partial.sent == whole.sent == 12
    assert partial.declared_count == 12
    by_key = {line.key: line for line in whole.lines}
    assert all(line == by_key[line.key] for line in partial.lines), "decoded alike, prints too"
    assert partial.lines[0].total_usd == Decimal("9.5")
    assert whole.kept == 0


def test_the_stored_lines_are_asked_for_only_with_a_seed_and_lines() -> None:
    asked: list[bool] = []

    def known() -> KnownLines:
        asked.append(True)
        return HELD

    decode_sales(sales_body(_sales()), warehouse_code="APP-TPF", zone=ZONE, known=known)
    decode_sales(sales_body([]), warehouse_code="APP-TPF", zone=ZONE, seed=SEED, known=known)
    assert asked == []
    batch = decode_sales(
        sales_body(_sales()), warehouse_code="APP-TPF", zone=ZONE, seed=SEED, known=known
    )
    assert asked == [True]
    assert (batch.lines, batch.kept) == ((), 10)


@pytest.mark.parametrize(
    "case",
    [
        "most lines changed",
        "a repeated line",
        "a changed line with a kept line's key",
        "nothing known",
    ],
)
def test_every_line_is_decoded_when_the_shortcut_could_differ(case: str) -> None:
    items = _sales()
    known = HELD
    if case == "most lines changed":
        items = [with_part(item, "cantidad", cantidad_vendida=Decimal(7)) for item in items]
        items[0] = _sales()[0]
    elif case == "a repeated line":
        items.append(items[0])
    elif case == "a changed line with a kept line's key":
        items.append(with_part(items[1], "cantidad", cantidad_vendida=Decimal(8)))
    else:
        known = KnownLines(by_fingerprint={})

    batch = _decode(items, known)

    assert batch.kept == 0
    whole = _decode(items)
    assert batch == whole
    if case == "a changed line with a kept line's key":  # the first of a key wins, as always
        assert {line.key: line for line in batch.lines}[("C10-01-00000001", 2)].quantity == 3


def test_a_bad_changed_line_is_refused_with_its_position_in_the_whole_answer() -> None:
    items = _sales(11)
    items[10] = with_part(items[10], "cantidad", codigo_almacen="OTRO")

    with pytest.raises(KlkBadPayloadError, match=r"\$\.ventas\[10\]\.cantidad\[0\]"):
        _decode(items, HELD)


def test_the_meta_count_is_checked_against_every_line_kept_or_not() -> None:
    with pytest.raises(KlkCountMismatchError):
        _decode(_sales(), HELD, total=11)
