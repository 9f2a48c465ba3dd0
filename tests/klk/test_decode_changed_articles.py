"""Decoding against what a warehouse holds: only the articles whose fingerprint no stored row has
are decoded; the rest are kept, and the stored skus the catalogue no longer lists are named.
Whenever that could differ from decoding the whole catalogue, the whole catalogue is decoded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from klk_builders import article, catalogue_body

from fluxion_etl.domain.records import Catalogue, KnownArticles
from fluxion_etl.errors import KlkBadPayloadError, KlkCountMismatchError
from fluxion_etl.klk.decode import decode_catalogue

SKUS = [f"{n:06d}" for n in range(1, 21)]


def _articles(**stock: Decimal) -> list[dict[str, Any]]:
    return [article(sku, stock=stock.get(f"s{sku}", Decimal(int(sku)))) for sku in SKUS]


def _held(catalogue: Catalogue) -> KnownArticles:
    """What a warehouse loaded from ``catalogue`` (decoded whole) holds."""
    assert catalogue.gone is None
    by_fingerprint = {item.fingerprint: item.sku for item in catalogue.items}
    assert None not in by_fingerprint
    return KnownArticles(by_fingerprint=by_fingerprint, skus=frozenset(by_fingerprint.values()))  # type: ignore[arg-type]


def _decode(articles: list[dict[str, Any]], known: KnownArticles | None = None) -> Catalogue:
    body = catalogue_body(articles)
    if known is None:
        return decode_catalogue(body, warehouse_code="APP-TPF")
    return decode_catalogue(body, warehouse_code="APP-TPF", known=lambda: known)


FIRST = _decode(_articles())
HELD = _held(FIRST)


def test_every_record_carries_the_fingerprint_of_its_article_as_sent() -> None:
    again = _decode(_articles())
    moved = _decode(_articles(s000003=Decimal("2.5")))

    assert [i.fingerprint for i in again.items] == [i.fingerprint for i in FIRST.items]
    assert len({i.fingerprint for i in FIRST.items}) == len(SKUS)
    differing = [
        a.sku
        for a, b in zip(FIRST.items, moved.items, strict=True)
        if a.fingerprint != b.fingerprint
    ]
    assert differing == ["000003"]
    assert all(-(2**63) <= i.fingerprint < 2**63 for i in FIRST.items)  # type: ignore[operator]


def test_only_the_changed_and_new_articles_are_decoded_and_the_gone_are_named() -> None:
    articles = _articles(s000003=Decimal("2.5"), s000007=Decimal(0))
    articles = [a for a in articles if a["Codigo"] not in ("000010", "000011")]
    articles.append(article("000099", stock=Decimal(4)))

    partial = _decode(articles, HELD)
    whole = _decode(articles)

    assert [i.sku for i in partial.items] == ["000003", "000007", "000099"]
    assert partial.kept == len(SKUS) - 4
    assert partial.gone == ("000010", "000011")
    assert partial.articles == whole.articles == len(articles)
    assert partial.digest == whole.digest
    by_sku = {i.sku: i for i in whole.items}
    assert all(item == by_sku[item.sku] for item in partial.items), (
        "decoded alike, fingerprints too"
    )
    assert whole.gone is None
    assert whole.kept == 0


def test_the_known_articles_are_asked_for_only_when_the_list_changed() -> None:
    asked: list[bool] = []

    def ask() -> KnownArticles:
        asked.append(True)
        return HELD

    body = catalogue_body(_articles())
    same = decode_catalogue(body, warehouse_code="APP-TPF", unchanged_if=FIRST.digest, known=ask)
    asked_for_same = list(asked)
    changed = decode_catalogue(
        catalogue_body(_articles(s000001=Decimal(7))),
        warehouse_code="APP-TPF",
        unchanged_if=FIRST.digest,
        known=ask,
    )

    assert same.unchanged
    assert asked_for_same == []
    assert not changed.unchanged
    assert changed.kept == len(SKUS) - 1
    assert asked == [True]


def test_stored_rows_without_a_fingerprint_are_decoded_again() -> None:
    held = KnownArticles(
        by_fingerprint={f: s for f, s in HELD.by_fingerprint.items() if s != "000005"},
        skus=HELD.skus,
    )

    partial = _decode(_articles(s000002=Decimal(9)), held)

    assert sorted(i.sku for i in partial.items) == ["000002", "000005"]
    assert partial.gone == ()
    assert partial.kept == len(SKUS) - 2


@pytest.mark.parametrize(
    "case",
    [
        "most articles changed",
        "an article repeated byte for byte",
        "a changed article with a kept article's sku",
        "a changed article with a value out of range",
    ],
)
def test_when_the_shortcut_could_differ_the_whole_catalogue_is_decoded(case: str) -> None:
    articles = _articles()
    if case == "most articles changed":
        articles = [article(a["Codigo"], stock=Decimal("0.5")) for a in articles]
    elif case == "an article repeated byte for byte":
        articles = [*articles, articles[4], article("000001", stock=Decimal(3))]
    elif case == "a changed article with a kept article's sku":
        articles = [*articles, article("000004", stock=Decimal(3))]  # a second 000004
    else:
        articles[2] = article("000003", stock=Decimal("1E+40"))

    whole_or_error: Catalogue | Exception
    try:
        whole_or_error = _decode(articles)
    except KlkBadPayloadError as exc:
        whole_or_error = exc

    if isinstance(whole_or_error, Exception):
        with pytest.raises(KlkBadPayloadError) as raised:
            _decode(articles, HELD)
        assert str(raised.value) == str(whole_or_error), "the same error, at the same row"
        assert "$.articulos[2]" in str(raised.value)
        return
    partial = _decode(articles, HELD)
    assert partial.gone is None
    assert partial.kept == 0
    assert partial == whole_or_error


def test_a_count_mismatch_is_caught_against_the_known_articles_too() -> None:
    body = catalogue_body(_articles(s000001=Decimal(7)), total=len(SKUS) + 1)
    with pytest.raises(KlkCountMismatchError):
        decode_catalogue(body, warehouse_code="APP-TPF", known=lambda: HELD)
