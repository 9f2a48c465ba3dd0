"""The catalogue digest: of the article list exactly as sent, and what ``unchanged_if`` skips."""

from __future__ import annotations

import json

import pytest
from tests.conftest import SAMPLES

from fluxion_etl.errors import KlkCountMismatchError, KlkErrorBodyError
from fluxion_etl.klk.decode import decode_catalogue

BODY = (SAMPLES / "articulos_almacen_APP-TPF.json").read_bytes()


def _with(body: bytes, **changes: object) -> bytes:
    """The sample with its meta or first article changed, re-serialised."""
    data = json.loads(body)
    data["meta"].update(changes.pop("meta", {}))  # type: ignore[call-overload]
    data["articulos"][0].update(changes)
    return json.dumps(data).encode()


def test_a_decoded_catalogue_carries_the_digest_of_its_article_list() -> None:
    plain = json.dumps(json.loads(BODY)).encode()
    decoded = decode_catalogue(plain, warehouse_code="APP-TPF")
    later = decode_catalogue(
        _with(plain, meta={"fecha_generacion": "2025-11-18T08:00:00"}), warehouse_code="APP-TPF"
    )
    moved = decode_catalogue(_with(plain, stock=1.5), warehouse_code="APP-TPF")

    assert decoded.digest is not None
    assert len(decoded.digest) == 40
    assert later.digest == decoded.digest, "when it was generated is not hashed"
    assert moved.digest != decoded.digest
    assert not decoded.unchanged
    assert len(decoded.items) == 6


def test_an_article_list_with_the_digest_given_is_not_decoded() -> None:
    digest = decode_catalogue(BODY, warehouse_code="APP-TPF").digest
    skipped = decode_catalogue(BODY, warehouse_code="APP-TPF", unchanged_if=digest)
    other = decode_catalogue(BODY, warehouse_code="APP-TPF", unchanged_if="0" * 40)

    assert (skipped.unchanged, skipped.items, skipped.digest) == (True, (), digest)
    assert skipped.generated_at is not None
    assert (other.unchanged, len(other.items)) == (False, 6)


def test_an_error_body_is_an_error_whatever_digest_is_given() -> None:
    body = (SAMPLES / "error_body.json").read_bytes()
    with pytest.raises(KlkErrorBodyError):
        decode_catalogue(body, warehouse_code="APP-TPF", unchanged_if="0" * 40)


def test_a_declared_count_that_no_longer_matches_is_caught_even_for_the_same_articles() -> None:
    """The count the meta declares is part of the digest: the same list with another count is
    decoded, and fails as a count mismatch, as it would without a digest."""
    plain = json.dumps(json.loads(BODY)).encode()
    digest = decode_catalogue(plain, warehouse_code="APP-TPF").digest
    miscounted = _with(plain, meta={"total_articulos": 7})  # the same article list, re-serialised
    assert json.loads(miscounted)["articulos"] == json.loads(plain)["articulos"]

    with pytest.raises(KlkCountMismatchError):
        decode_catalogue(miscounted, warehouse_code="APP-TPF", unchanged_if=digest)
