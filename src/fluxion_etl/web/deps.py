"""Who may see and do what on the pages, as ``Annotated`` dependencies.

``Viewer``: any logged-in token (scope ``read``). ``Operator`` and ``Administrator`` guard the forms
that change something: the session's CSRF token must come back in the form, and the token needs
scope ``trigger`` (start, re-run, recover, check) or ``admin`` (cancel, switch a schedule), the
same scopes the API asks for. The checks run in that order: no session → log in; a form without
its CSRF token → refused, whatever the scope; then the scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from fluxion_etl.store import tokens
from fluxion_etl.store.tokens import Scope
from fluxion_etl.web import auth, queries
from fluxion_etl.web.auth import WebUser
from fluxion_etl.web.i18n import Message
from fluxion_etl.web.render import services_of, web_state


class WebRefusal(Exception):
    """A page request that is answered with a page or a redirect instead of its content."""


class LoginRequired(WebRefusal):
    """No valid session (none, expired, tampered, or its token was revoked)."""


class Forbidden(WebRefusal):
    """A session that may not do this (its scope), or a form without its CSRF token."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.key)
        self.message = message


class PageNotFound(WebRefusal):
    def __init__(self, message: Message) -> None:
        super().__init__(message.key)
        self.message = message


def current_user(request: Request) -> WebUser:
    """The session's user, checked against the token table on every request."""
    state, services = web_state(request), services_of(request)
    session = auth.read_session(request, state.signer, state.session_seconds)
    if session is None:
        raise LoginRequired()
    with services.read_engine.connect() as conn:
        stored = queries.token_by_id(conn, session.token_id)
    if stored is None or not stored.info.active:
        raise LoginRequired()
    if not auth.same_token(state.signer.fingerprint(stored.token_hash), session.token_mark):
        raise LoginRequired()
    info = stored.info
    now = services.clock.now()
    if tokens.needs_touch(info, now):
        with services.engine.begin() as conn:
            tokens.touch_token(conn, info.id, now=now)
    user = WebUser(name=info.name, scope=info.scope, csrf=session.csrf)
    request.state.web_user = user
    return user


def posting(scope: Scope) -> Callable[[Request, WebUser], Awaitable[WebUser]]:
    """A form's guard: the session's CSRF token, then ``scope``."""

    async def check(request: Request, user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
        form = await request.form()
        if not auth.same_token(user.csrf, form.get(auth.CSRF_FIELD)):
            raise Forbidden(Message("error.csrf", kind="error"))
        if not user.can(scope):
            raise Forbidden(
                Message(
                    "error.scope",
                    {"needed": scope.value, "name": user.name, "has": user.scope.value},
                    kind="error",
                )
            )
        return user

    check.__name__ = f"posting_{scope.value}"
    return check


Viewer = Annotated[WebUser, Depends(current_user)]
Member = Annotated[WebUser, Depends(posting(Scope.READ))]  # a form any session may send (logout)
Operator = Annotated[WebUser, Depends(posting(Scope.TRIGGER))]
Administrator = Annotated[WebUser, Depends(posting(Scope.ADMIN))]
