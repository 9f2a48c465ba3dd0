"""Signed values: a session cookie cannot be forged, used for another purpose or kept forever."""

from __future__ import annotations

import pytest

from fluxion_etl.web.auth import Signer, safe_next, same_token, session_key


def test_a_signed_value_reads_back_only_for_its_purpose() -> None:
    signer = Signer(session_key("secret"))
    value = signer.dumps("session", {"tid": 1})
    assert signer.loads("session", value, max_age=60) is not None
    assert signer.loads("flash", value, max_age=60) is None


def test_another_key_or_an_edited_value_is_refused() -> None:
    value = Signer(session_key("one")).dumps("session", {"tid": 1})
    assert Signer(session_key("two")).loads("session", value, max_age=60) is None
    body, mac = value.split(".")
    assert Signer(session_key("one")).loads("session", f"{body}x.{mac}", max_age=60) is None
    for junk in ("", "no-dot", "a.b.c", "!!.??"):
        assert Signer(session_key("one")).loads("session", junk, max_age=60) is None


def test_a_value_older_than_its_max_age_is_refused() -> None:
    now = [1_000_000.0]
    signer = Signer(session_key("secret"), seconds=lambda: now[0])
    value = signer.dumps("session", {"tid": 1})
    now[0] += 3600
    assert signer.loads("session", value, max_age=3600) is not None
    now[0] += 1
    assert signer.loads("session", value, max_age=3600) is None


def test_without_a_configured_secret_each_process_gets_its_own_key() -> None:
    assert session_key(None) != session_key(None)
    assert session_key("x") == session_key("x")


def test_a_missing_or_empty_csrf_token_never_matches() -> None:
    assert not same_token(None, None)
    assert not same_token("", "")
    assert not same_token("abc", None)
    assert not same_token("abc", "abd")
    assert same_token("abc", "abc")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs?job=sales", "/runs?job=sales"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/\nheader", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_are_followed_after_a_form(target: object, expected: str) -> None:
    assert safe_next(target) == expected
