"""A catalogue body of the usual shape is read in one pass (``meta`` and each article's bytes);
any other shape is read the general way. Both must give the same catalogue, and a body of any
other shape must fail exactly as the general way says."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from klk_builders import article, catalogue_body, encode

from fluxion_etl.errors import KlkBadPayloadError, KlkCountMismatchError, KlkErrorBodyError
from fluxion_etl.klk import decode, wire
from fluxion_etl.klk.decode import article_fingerprints, catalogue_digest, decode_catalogue

META = {"total_articulos": 2, "almacences_filtrados": "APP-TPF"}
ARTICLES = [article("000001"), article("000002")]


def _body(top: dict[str, Any]) -> bytes:
    return encode(top)


def _general(body: bytes) -> tuple[wire.CatalogueMeta, list[wire.Article]]:
    """The general way, written out: the envelope as a dict, then each part typed."""
    top = decode._envelope(body, "articulos/almacen")
    meta = decode._decode_part(top, "meta", wire.CatalogueMeta)
    return meta, decode._decode_part(top, "articulos", list[wire.Article])


def test_one_pass_and_the_general_way_read_the_same_articles() -> None:
    body = catalogue_body([article(f"{n:06d}", stock=n) for n in range(1, 40)])
    envelope = decode._one_pass_envelope(body)

    assert envelope is not None  # the usual shape: one pass
    assert envelope.articulos is not None
    general = decode._raw_items(decode._envelope(body, "x")["articulos"])
    assert general is not None
    assert [bytes(r) for r in envelope.articulos] == [bytes(r) for r in general]
    assert decode._one_pass_meta(envelope) == _general(body)[0]
    assert decode._joined_articles(envelope.articulos) == _general(body)[1]


def test_a_body_with_another_top_level_key_is_read_the_general_way() -> None:
    odd = b'{"extra": 1, ' + catalogue_body(ARTICLES)[1:]

    assert decode._one_pass_envelope(odd) is None
    assert decode._one_pass_envelope(catalogue_body(ARTICLES)) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"\xff": 0, ' + catalogue_body(ARTICLES)[1:],
        catalogue_body(ARTICLES)[:-1] + b', "\xc0\xaf": 0}',
    ],
    ids=["first", "last"],
)
def test_a_top_level_key_that_is_not_utf8_fails_the_body(body: bytes) -> None:
    """The one pass skips nothing unchecked: such a key fails as in any other call's body."""

    with pytest.raises(KlkBadPayloadError, match="not UTF-8"):
        decode_catalogue(body, warehouse_code="APP-TPF")
    with pytest.raises(KlkBadPayloadError, match="not UTF-8"):
        decode.decode_sales(body, warehouse_code="APP-TPF", zone=ZoneInfo("America/Caracas"))


def test_the_digest_and_fingerprints_come_from_each_article_as_sent() -> None:
    body = catalogue_body(ARTICLES)
    raws = msgspec.json.decode(
        msgspec.json.decode(body, type=dict[str, msgspec.Raw])["articulos"],
        type=list[msgspec.Raw],
    )
    decoded = decode_catalogue(body, warehouse_code="APP-TPF")

    fingerprints = article_fingerprints(raws)
    assert [i.fingerprint for i in decoded.items] == fingerprints
    assert decoded.digest == catalogue_digest(fingerprints, 2)
    assert catalogue_digest(fingerprints, 3) != decoded.digest  # the declared count counts
    assert catalogue_digest(fingerprints[::-1], 2) != decoded.digest  # and so does the order


def test_a_byte_order_mark_and_unknown_keys_read_as_without() -> None:
    plain = decode_catalogue(catalogue_body(ARTICLES), warehouse_code="APP-TPF")
    odd = b'{"extra": [1, {"a": null}], ' + catalogue_body(ARTICLES)[1:]

    for body in (b"\xef\xbb\xbf" + catalogue_body(ARTICLES), odd):
        assert decode_catalogue(body, warehouse_code="APP-TPF") == plain


@pytest.mark.parametrize(
    ("top", "error", "says"),
    [
        ({"meta": META, "articulos": {}}, KlkBadPayloadError, "$.articulos"),
        ({"meta": META, "articulos": None}, KlkBadPayloadError, "$.articulos"),
        ({"meta": META, "articulos": "x"}, KlkBadPayloadError, "$.articulos"),
        ({"articulos": ARTICLES}, KlkBadPayloadError, "object has no `meta` key"),
        ({"meta": META}, KlkBadPayloadError, "object has no `articulos` key"),
        ({"meta": None, "articulos": ARTICLES}, KlkBadPayloadError, "$.meta"),
        ({"meta": {"total_articulos": "2"}, "articulos": ARTICLES}, KlkBadPayloadError, "$.meta"),
        ({"error": "token vencido", "meta": META, "articulos": []}, KlkErrorBodyError, "vencido"),
        ({"error": {"code": 7}}, KlkErrorBodyError, '{"code":7}'),
        (
            {"meta": {**META, "total_articulos": 3}, "articulos": ARTICLES},
            KlkCountMismatchError,
            "",
        ),
        (
            {"meta": META, "articulos": [ARTICLES[0], {"Codigo": 5}]},
            KlkBadPayloadError,
            "$.articulos[1].Codigo",
        ),
    ],
)
def test_a_body_of_another_shape_fails_as_the_general_way_says(
    top: dict[str, Any], error: type[Exception], says: str
) -> None:
    body = _body(top)
    with pytest.raises(error) as raised:
        decode_catalogue(body, warehouse_code="APP-TPF")

    assert says in str(raised.value)
    assert raised.value.raw == body  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [b"", b"[1, 2]", b"null", b'{"meta": {"total_articulos": 2}, "articulos": [', b"\xff\xfe{}"],
)
def test_bytes_that_are_no_object_fail_as_any_other_call_s_body(body: bytes) -> None:
    with pytest.raises(KlkBadPayloadError) as one_pass:
        decode_catalogue(body, warehouse_code="APP-TPF")
    with pytest.raises(KlkBadPayloadError) as general:
        decode.catalogue_warehouses(body, call="articulos/almacen")

    assert str(one_pass.value) == str(general.value)
