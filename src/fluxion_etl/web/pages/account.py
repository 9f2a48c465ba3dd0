"""Logging in with a token, logging out, and the language switch.

    GET  /login     the form (a logged-in visitor goes straight on)
    POST /login     a valid token starts a session (recorded as ``web.login``)
    POST /logout    ends it (``web.logout``)
    POST /lang      Spanish or English, remembered in a cookie for a year

All three forms carry a CSRF token: the session's, or before a session the pre-login cookie's,
so another site can neither log a visitor in under its own token nor switch their language.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from fluxion_etl.store import audit, tokens
from fluxion_etl.web import auth
from fluxion_etl.web.deps import LoginRequired, Member, current_user
from fluxion_etl.web.i18n import LANG_COOKIE, Message, pick_language
from fluxion_etl.web.render import redirect, render, services_of, web_state

router = APIRouter(include_in_schema=False)

LANG_SECONDS = 365 * 24 * 3600


def _logged_in(request: Request) -> bool:
    try:
        current_user(request)
    except LoginRequired:
        return False
    return True


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    target = auth.safe_next(next)
    if _logged_in(request):
        return redirect(request, target)
    return render(request, "login.html", {"next": target, "error": None})


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    back: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    state, services = web_state(request), services_of(request)
    target = auth.safe_next(back)
    if not auth.same_token(auth.prelogin_csrf(request, state.signer), csrf):
        return render(
            request, "login.html", {"next": target, "error": Message("login.expired")}, status=403
        )
    with services.engine.begin() as conn:
        info = tokens.verify_token(conn, token.strip())
        if info is not None:
            audit.record(
                conn, actor=info.name, action="web.login", now=services.clock.now(), target="web"
            )
    if info is None:
        return render(
            request, "login.html", {"next": target, "error": Message("login.bad_token")}, status=401
        )
    response = redirect(request, target)
    mark = state.signer.fingerprint(tokens.hash_token(token.strip()))
    session = auth.Session.for_token(info, mark)
    auth.write_session(response, request, state.signer, session, state.session_seconds)
    auth.clear_cookie(response, request, auth.PRELOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, user: Member) -> Response:
    services = services_of(request)
    with services.engine.begin() as conn:
        audit.record(
            conn, actor=user.name, action="web.logout", now=services.clock.now(), target="web"
        )
    response = redirect(request, "/login", Message("flash.logged_out"))
    auth.clear_cookie(response, request, auth.SESSION_COOKIE)
    return response


@router.post("/lang")
def switch_language(
    request: Request,
    lang: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    back: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    state = web_state(request)
    expected: str | None
    try:
        expected = current_user(request).csrf
    except LoginRequired:
        expected = auth.prelogin_csrf(request, state.signer)
    target = auth.safe_next(back)
    if not auth.same_token(expected, csrf):
        return redirect(request, target, Message("error.csrf", kind="error"))
    response = redirect(request, target)
    auth.set_cookie(response, request, LANG_COOKIE, pick_language(lang), max_age=LANG_SECONDS)
    return response
