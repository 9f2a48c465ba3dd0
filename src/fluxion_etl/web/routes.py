"""The control centre: server-rendered pages over the service's own context, behind its tokens.

    /                overview: freshness per location and job, what runs, failed, was missed
    /runs            the run ledger, filterable; /runs/{id} one run with its locations and logs
    /schedules       schedules, their next and recent fires; switch on/off, fire now
    /gaps            coverage calendar and open gaps; recover one, a location's or all
    /locations       the configuration and the last check against KLK
    /login /logout /lang

``mount_web(app, settings)`` adds them to the API's app (``create_app``): the router, the static
files, the security headers and the answers to refused requests (no session: the login page;
a form without its CSRF token or a token whose scope is too small: 403; no such run: 404).
Pages work without JavaScript; ``static/fluxion.js`` only refreshes them while runs go on,
filters logs as one types and asks before destructive clicks.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from fluxion_etl.settings import Settings
from fluxion_etl.web import auth
from fluxion_etl.web.deps import Forbidden, LoginRequired, PageNotFound
from fluxion_etl.web.i18n import Message
from fluxion_etl.web.pages import account, gaps, locations, overview, runs, schedules
from fluxion_etl.web.render import WebState, build_environment, redirect, render
from fluxion_etl.web.security import SecurityHeaders

SECTIONS = frozenset(
    {"login", "logout", "lang", "runs", "schedules", "gaps", "locations", "static"}
)


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for module in (account, overview, runs, schedules, gaps, locations):
        router.include_router(module.router)
    return router


def is_web_path(path: str) -> bool:
    return path == "/" or path.split("/")[1] in SECTIONS


def mount_web(app: FastAPI, settings: Settings) -> None:
    """Serve the control centre from ``app`` (see the module docstring)."""
    secret = settings.session_secret.get_secret_value() if settings.session_secret else None
    app.state.web = WebState(
        signer=auth.Signer(auth.session_key(secret)),
        env=build_environment(),
        session_seconds=settings.session_hours * 3600,
    )
    app.include_router(build_router())
    app.mount("/static", StaticFiles(packages=[("fluxion_etl.web", "static")]), name="static")
    app.add_middleware(SecurityHeaders, applies=is_web_path)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(PageNotFound, _not_found)


async def _to_login(request: Request, exc: Exception) -> Response:
    """To the login page; after logging in, back to the page that was asked for (GET only)."""
    if request.method != "GET":
        return redirect(request, "/login", Message("flash.session_ended", kind="error"))
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(request, f"/login?next={quote(here, safe='')}")


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    return render(request, "error.html", {"message": exc.message}, status=403)


def error_page(request: Request, status: int, detail: str | None = None) -> Response:
    """A control centre page answering a request the app refused before any page ran (a wrong
    parameter in the address, no such page, a form sent to a page): a page, not the API's JSON."""
    if status == 422:
        message = Message("error.bad_parameter", {"detail": detail or ""})
    elif status == 405:
        message = Message("error.method")
    else:
        message = Message("error.no_page")
    return render(request, "error.html", {"message": message}, status=status)


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageNotFound)
    return render(request, "error.html", {"message": exc.message}, status=404)
