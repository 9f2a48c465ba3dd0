"""API bearer tokens: one per person or caller, with a scope (``read`` ⊂ ``trigger`` ⊂ ``admin``).

A token is shown once, when it is created; only its SHA-256 hash is stored, so a copy of the
database does not hand out working tokens. A presented token is looked up by its hash (the hash is
a unique column) and the stored hash is then compared in constant time. ``last_used_at`` is
refreshed at most once a minute, so reading the API does not turn every request into a write.

Revoked tokens keep their row (the audit trail names them); their name can be given to a new token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from fluxion_etl.errors import BadInputError
from fluxion_etl.store.schema import api_tokens

TOKEN_PREFIX = "flx_"  # noqa: S105 - a public marker, not a secret
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,99}$")
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_SECRET_LENGTH = 200
# Every API request runs this lookup: built once, it skips rebuilding and re-keying the statement
# (about half the client-side cost of the query).
_BY_HASHES = select(api_tokens).where(
    api_tokens.c.token_hash.in_(bindparam("digests", expanding=True))
)


class Scope(StrEnum):
    READ = "read"
    TRIGGER = "trigger"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Scope) -> bool:
        """``admin`` can do what ``trigger`` can, which can do what ``read`` can."""
        return self.rank >= needed.rank


_RANK = {Scope.READ: 1, Scope.TRIGGER: 2, Scope.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class CreatedToken:
    info: TokenInfo
    secret: str  # shown once; never stored


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def is_well_formed(secret: str) -> bool:
    """Shaped like a token of ours (a cheap check before any lookup)."""
    return secret.startswith(TOKEN_PREFIX) and len(secret) <= MAX_SECRET_LENGTH


def new_secret() -> str:
    """A random token with a recognisable prefix (secret scanners and people can spot it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise BadInputError("--scope", f"{value!r}: use one of {known}") from None


def create_token(conn: Connection, *, name: str, scope: Scope, now: datetime) -> CreatedToken:
    """A new token named ``name``; refused while an active token has that name."""
    if not NAME_PATTERN.match(name):
        raise BadInputError(
            "--name", f"{name!r}: use letters, digits and _ . @ : - (at most 100 characters)"
        )
    existing = _find(conn, name)
    if existing is not None and existing.active:
        raise BadInputError("--name", f"a token named {name!r} exists: revoke it first")
    secret = new_secret()
    values = {
        "scope": scope.value,
        "token_hash": hash_token(secret),
        "created_at": now,
        "last_used_at": None,
        "revoked_at": None,
    }
    if existing is None:
        conn.execute(insert(api_tokens).values(name=name, **values))
    else:
        conn.execute(update(api_tokens).where(api_tokens.c.name == name).values(values))
    info = _find(conn, name)
    assert info is not None
    return CreatedToken(info=info, secret=secret)


def verify_token(conn: Connection, secret: str) -> TokenInfo | None:
    """The active token ``secret`` belongs to, or None (unknown, malformed or revoked)."""
    return verify_tokens(conn, [secret]).get(secret)


def verify_tokens(conn: Connection, secrets: Sequence[str]) -> dict[str, TokenInfo]:
    """``verify_token`` for many secrets in one query: the active token of each secret that has
    one (the API checks the tokens of concurrent requests together, ``api.lookups``)."""
    digests = presented_digests(secrets)
    if not digests:
        return {}
    return active_by_secret(
        conn.execute(_BY_HASHES, {"digests": list(digests)}).mappings(), digests
    )


def presented_digests(secrets: Sequence[str]) -> dict[str, str]:
    """The hash of each well-formed secret → the secret (what ``verify_tokens`` looks up)."""
    return {hash_token(secret): secret for secret in secrets if is_well_formed(secret)}


def active_by_secret(
    rows: Iterable[Mapping[Any, Any]], digests: Mapping[str, str]
) -> dict[str, TokenInfo]:
    """The active token of each presented secret among ``rows`` (token rows looked up by the
    ``digests`` of ``presented_digests``), the stored hash compared in constant time."""
    found: dict[str, TokenInfo] = {}
    for row in rows:
        digest = str(row["token_hash"])
        secret = digests.get(digest)
        if secret is None or not hmac.compare_digest(digest, hash_token(secret)):
            continue
        info = _info(row)
        if info.active:
            found[secret] = info
    return found


def needs_touch(info: TokenInfo, now: datetime) -> bool:
    return info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION


def touch_token(conn: Connection, token_id: int, *, now: datetime) -> None:
    """Record that a token was used (callers throttle with ``needs_touch``)."""
    conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now))


def list_tokens(conn: Connection, *, include_revoked: bool = True) -> list[TokenInfo]:
    query = select(api_tokens).order_by(api_tokens.c.name)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    return [_info(row) for row in conn.execute(query).mappings()]


def revoke_token(conn: Connection, name: str, *, now: datetime) -> bool:
    """Revoke the active token ``name``; False when there is none."""
    result = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def _find(conn: Connection, name: str) -> TokenInfo | None:
    row = conn.execute(select(api_tokens).where(api_tokens.c.name == name)).mappings().first()
    return None if row is None else _info(row)


def _info(row: Mapping[Any, Any]) -> TokenInfo:
    return TokenInfo(
        id=int(row["id"]),
        name=str(row["name"]),
        scope=Scope(row["scope"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )
