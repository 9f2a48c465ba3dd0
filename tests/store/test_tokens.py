"""API tokens on both dialects (shown once, stored hashed, scoped, revocable); the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from fluxion_etl.errors import BadInputError
from fluxion_etl.store import audit, tokens
from fluxion_etl.store.schema import api_tokens
from fluxion_etl.store.tokens import Scope

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def create(engine: Engine, name: str = "eventbridge", scope: Scope = Scope.TRIGGER) -> str:
    with engine.begin() as conn:
        return tokens.create_token(conn, name=name, scope=scope, now=T0).secret


def verify(engine: Engine, secret: str) -> tokens.TokenInfo | None:
    with engine.connect() as conn:
        return tokens.verify_token(conn, secret)


def test_a_token_is_random_prefixed_and_only_its_hash_is_stored(engine: Engine) -> None:
    secret = create(engine)

    assert secret.startswith("flx_")
    assert len(secret) > 40
    with engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash)).scalar_one()
    assert stored == tokens.hash_token(secret)
    assert secret not in stored
    assert create(engine, "other") != secret


def test_a_token_verifies_to_its_name_and_scope(engine: Engine) -> None:
    secret = create(engine, "ana", Scope.ADMIN)

    info = verify(engine, secret)

    assert info is not None
    assert (info.name, info.scope) == ("ana", Scope.ADMIN)


def test_an_unknown_token_does_not_verify(engine: Engine) -> None:
    create(engine)

    for presented in ("", "flx_", "flx_wrong", "not-even-prefixed", "flx_" + "a" * 500):
        assert verify(engine, presented) is None, presented


def test_a_revoked_token_no_longer_verifies_and_its_name_can_be_reused(engine: Engine) -> None:
    old = create(engine, "lambda")
    with engine.begin() as conn:
        assert tokens.revoke_token(conn, "lambda", now=T0)
        assert not tokens.revoke_token(conn, "lambda", now=T0)  # already revoked

    new = create(engine, "lambda", Scope.READ)

    assert verify(engine, old) is None
    info = verify(engine, new)
    assert info is not None
    assert info.scope is Scope.READ


def test_an_active_name_cannot_be_taken_twice(engine: Engine) -> None:
    create(engine, "ana")

    with pytest.raises(BadInputError, match="revoke it first"):
        create(engine, "ana")


def test_a_bad_name_is_refused(engine: Engine) -> None:
    for name in ("", "has space", "-leading", "x" * 101):
        with pytest.raises(BadInputError, match="--name"):
            create(engine, name)


def test_scopes_nest_admin_over_trigger_over_read() -> None:
    allowed = {(have, need) for have in Scope for need in Scope if have.allows(need)}

    assert allowed == {
        (Scope.READ, Scope.READ),
        (Scope.TRIGGER, Scope.READ),
        (Scope.TRIGGER, Scope.TRIGGER),
        (Scope.ADMIN, Scope.READ),
        (Scope.ADMIN, Scope.TRIGGER),
        (Scope.ADMIN, Scope.ADMIN),
    }


def test_an_unknown_scope_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="read, trigger, admin"):
        tokens.parse_scope("root")


def test_use_is_recorded_at_most_once_a_minute(engine: Engine) -> None:
    info = verify(engine, create(engine))
    assert info is not None
    assert tokens.needs_touch(info, T0)
    with engine.begin() as conn:
        tokens.touch_token(conn, info.id, now=T0)

    with engine.connect() as conn:
        listed = {t.name: t for t in tokens.list_tokens(conn)}
    assert listed["eventbridge"].last_used_at == T0
    assert not tokens.needs_touch(listed["eventbridge"], T0 + timedelta(seconds=59))
    assert tokens.needs_touch(listed["eventbridge"], T0 + timedelta(seconds=60))


def test_the_audit_trail_keeps_actor_action_target_and_detail_newest_first(engine: Engine) -> None:
    with engine.begin() as conn:
        audit.record(
            conn,
            actor="cli:ana",
            action="token.create",
            target="token:x",
            now=T0,
            detail={"scope": "read", "when": T0},
        )
        audit.record(
            conn, actor="admin", action="run.cancel", target="run:7", now=T0 + timedelta(seconds=1)
        )

    with engine.connect() as conn:
        trail = audit.entries(conn)
        mine = audit.entries(conn, actor="cli:ana")

    assert [(e.actor, e.action, e.target) for e in trail] == [
        ("admin", "run.cancel", "run:7"),
        ("cli:ana", "token.create", "token:x"),
    ]
    assert mine[0].detail == {"scope": "read", "when": T0.isoformat(sep=" ")}
    assert mine[0].at == T0
