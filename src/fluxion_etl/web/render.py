"""Rendering pages: the template environment, what every page gets, and how values are written.

Every page receives ``t`` (the translator), ``fmt`` (times in a zone with its offset, ages and
durations in words, numbers), ``user`` (None on the login page), ``csrf`` for its forms, the
pending flash message and ``here`` (the path and query, for "come back here" fields).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.schedules import DEFAULT_TIMEZONE
from fluxion_etl.web import auth
from fluxion_etl.web.auth import Signer, WebUser
from fluxion_etl.web.i18n import LANG_COOKIE, Message, Translator, translator


@dataclass(frozen=True, slots=True)
class WebState:
    """What the pages share, built once by ``mount_web`` (never at import)."""

    signer: Signer
    env: Environment
    session_seconds: float


def build_environment() -> Environment:
    return Environment(
        loader=PackageLoader("fluxion_etl.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def services_of(request: Request) -> ServiceContext:
    services: ServiceContext = request.app.state.services
    return services


def page_translator(request: Request) -> Translator:
    return translator(request.cookies.get(LANG_COOKIE))


def chain_zone(config: ChainConfig) -> ZoneInfo:
    """The chain's zone (its first location's): for runs and counts that span locations."""
    return config.locations[0].zone if config.locations else ZoneInfo(DEFAULT_TIMEZONE)


def location_zone(config: ChainConfig, location_id: str | None) -> ZoneInfo:
    if location_id is not None and location_id in config.location_ids:
        return config.location(location_id).zone
    return chain_zone(config)


@dataclass(frozen=True, slots=True)
class Fmt:
    """How pages write times, ages, durations and numbers in the page's language."""

    t: Translator
    now: datetime

    def time(
        self,
        instant: datetime | None,
        zone: tzinfo | str,
        *,
        day: bool = True,
        seconds: bool = False,
    ) -> Markup:
        """``17/11 10:05 -04``: local wall time with the zone's abbreviation or offset."""
        if instant is None:
            return Markup("—")
        where = ZoneInfo(zone) if isinstance(zone, str) else zone
        local = instant.astimezone(where)
        clock = "%H:%M:%S" if seconds else "%H:%M"
        text = local.strftime(f"%d/%m {clock} %Z" if day else f"{clock} %Z")
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            instant.isoformat(), local.isoformat(timespec="seconds"), text
        )

    def age(self, instant: datetime | None) -> str:
        """``hace 5 min``; ``nunca`` for no instant."""
        if instant is None:
            return self.t("age.never")
        seconds = (self.now - instant).total_seconds()
        if seconds < 60:
            return self.t("age.just_now")
        return self.t("age.ago", span=self.span(seconds))

    def span(self, seconds: float | None) -> str:
        """``45 s``, ``12 min``, ``2 h 05 min``, ``3 d 4 h``."""
        if seconds is None:
            return "—"
        whole = int(max(seconds, 0))
        if whole < 60:
            return f"{whole} s"
        minutes = whole // 60
        if minutes < 60:
            return f"{minutes} min"
        hours, minutes = divmod(minutes, 60)
        if hours < 48:
            return f"{hours} h {minutes:02d} min"
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h"

    def ms(self, milliseconds: int | None) -> str:
        if not milliseconds:
            return "0 s"
        if milliseconds < 1000:
            return f"{milliseconds} ms"
        return f"{self.t.number(milliseconds / 1000)} s"

    def number(self, value: int | float) -> str:
        return self.t.number(value)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response:
    """The page ``template`` with the common context; consumes the pending flash message."""
    state = web_state(request)
    services = services_of(request)
    t = page_translator(request)
    user: WebUser | None = getattr(request.state, "web_user", None)
    flash = read_flash(request, state.signer)
    csrf = user.csrf if user else auth.prelogin_csrf(request, state.signer)
    fresh_prelogin = csrf is None
    if csrf is None:
        csrf = secrets.token_urlsafe(32)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    values = {
        "t": t,
        "lang": t.lang,
        "fmt": Fmt(t, services.clock.now()),
        "user": user,
        "csrf": csrf,
        "flash": flash,
        "here": here,
        "path": request.url.path,
        **(context or {}),
    }
    html = state.env.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status)
    if flash is not None:
        auth.clear_cookie(response, request, auth.FLASH_COOKIE)
    if fresh_prelogin:
        auth.write_prelogin(response, request, state.signer, csrf)
    return response


def redirect(request: Request, to: str, message: Message | None = None) -> RedirectResponse:
    """303 to ``to`` (a GET), with ``message`` shown once on the next page."""
    response = RedirectResponse(to, status_code=303)
    if message is not None:
        value = web_state(request).signer.dumps("flash", message.to_json())
        auth.set_cookie(response, request, auth.FLASH_COOKIE, value, max_age=auth.FLASH_SECONDS)
    return response


def read_flash(request: Request, signer: Signer) -> Message | None:
    data = signer.loads("flash", request.cookies.get(auth.FLASH_COOKIE), max_age=auth.FLASH_SECONDS)
    return None if data is None else Message.from_json(data)
