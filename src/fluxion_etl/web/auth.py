"""Sessions of the control centre: the same API tokens, pasted once into a login form.

A valid token (``store.tokens.verify_token``) buys a session cookie that holds the token's id,
name and scope and a random CSRF token, never the token itself, signed with HMAC-SHA256:

- the key is ``FLUXION_SESSION_SECRET``; without it, a random key made when the app is built, so
  sessions end when the service restarts and are not shared between processes (set the secret
  when several processes serve one database behind a load balancer);
- the cookie is HttpOnly (scripts cannot read it), SameSite=Lax (other sites' forms do not carry
  it) and Secure when the request came over HTTPS (directly or ``X-Forwarded-Proto: https``);
- every request looks the token up again by id, so a revoked token ends its sessions at once, and
  a token re-created later under the same name (a new secret, a new hash) does not revive them:
  the session holds a keyed fingerprint of the token's stored hash, which says nothing about it;
- every form that changes something carries the session's CSRF token in a hidden field, compared
  in constant time; the login and language forms, used before a session exists, carry one from a
  short-lived signed cookie instead.

Signed values carry their purpose, so a flash cookie can never be replayed as a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fluxion_etl.store.tokens import Scope, TokenInfo

SESSION_COOKIE = "fluxion_session"
PRELOGIN_COOKIE = "fluxion_prelogin"
FLASH_COOKIE = "fluxion_flash"
CSRF_FIELD = "csrf"
PRELOGIN_SECONDS = 2 * 3600
FLASH_SECONDS = 120


class Signer:
    """``base64(json).base64(hmac)``; ``loads`` refuses a wrong purpose or an old value."""

    def __init__(self, key: bytes, *, seconds: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("a session key needs at least 16 bytes")
        self._key, self._seconds = key, seconds

    def dumps(self, purpose: str, data: dict[str, Any]) -> str:
        issued = self._seconds()
        payload = json.dumps({**data, "p": purpose, "iat": issued}, separators=(",", ":"))
        body = _b64(payload.encode())
        return f"{body}.{self._mac(body)}"

    def loads(self, purpose: str, value: str | None, *, max_age: float) -> dict[str, Any] | None:
        if not value or value.count(".") != 1 or len(value) > 4000:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("p") != purpose:
            return None
        issued = data.get("iat")
        if not isinstance(issued, int | float) or not 0 <= self._seconds() - issued <= max_age:
            return None
        return data

    def fingerprint(self, text: str) -> str:
        """A keyed digest of ``text`` (a token's stored hash) that reveals nothing about it."""
        return self._mac(f"fingerprint:{text}")[:22]

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(secret: str | None) -> bytes:
    """The configured secret's bytes (hashed to a fixed length), or a fresh random key."""
    if secret:
        return hashlib.sha256(secret.encode()).digest()
    return secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Session:
    """What the session cookie says: which token logged in, and this session's CSRF token."""

    token_id: int
    token_name: str
    token_mark: str  # the fingerprint of the token's hash: a name re-created is another token
    csrf: str

    @classmethod
    def for_token(cls, info: TokenInfo, mark: str) -> Session:
        return cls(info.id, info.name, mark, secrets.token_urlsafe(32))

    def to_json(self) -> dict[str, Any]:
        return {"tid": self.token_id, "n": self.token_name, "tm": self.token_mark, "c": self.csrf}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session | None:
        try:
            return cls(int(data["tid"]), str(data["n"]), str(data["tm"]), str(data["c"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class WebUser:
    """The person behind a session: the token's name is who the audit trail and runs record."""

    name: str
    scope: Scope
    csrf: str

    def can(self, scope: Scope | str) -> bool:
        return self.scope.allows(Scope(scope))


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, *, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_https(request))


def read_session(request: Request, signer: Signer, max_age: float) -> Session | None:
    data = signer.loads("session", request.cookies.get(SESSION_COOKIE), max_age=max_age)
    return None if data is None else Session.from_json(data)


def write_session(
    response: Response, request: Request, signer: Signer, session: Session, max_age: float
) -> None:
    value = signer.dumps("session", session.to_json())
    set_cookie(response, request, SESSION_COOKIE, value, max_age=int(max_age))


def prelogin_csrf(request: Request, signer: Signer) -> str | None:
    """The CSRF token of the pre-session cookie (login and language forms), if it is valid."""
    data = signer.loads("prelogin", request.cookies.get(PRELOGIN_COOKIE), max_age=PRELOGIN_SECONDS)
    token = None if data is None else data.get("c")
    return token if isinstance(token, str) else None


def write_prelogin(response: Response, request: Request, signer: Signer, token: str) -> None:
    value = signer.dumps("prelogin", {"c": token})
    set_cookie(response, request, PRELOGIN_COOKIE, value, max_age=PRELOGIN_SECONDS)


def same_token(expected: str | None, presented: object) -> bool:
    """The CSRF comparison: constant time, and nothing matches a missing token."""
    if not expected or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def safe_next(value: object, default: str = "/") -> str:
    """A local path to return to after login or a switch; anything else (another site) is ``/``."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(ch) < 32 for ch in value) or len(value) > 500:
        return default
    return value
