"""Security headers on the control centre's pages (ASGI middleware).

The pages load nothing from elsewhere and run no inline script or style, so the policy can be
strict: only this origin's files, no framing (clickjacking), forms post only here, no plugins.
Pages are never cached (they show live state behind a login). The API's JSON routes and the
OpenAPI docs (which load Swagger UI from a CDN) are left as the API sets them.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


class SecurityHeaders:
    """Adds ``HEADERS`` to every response whose path ``applies`` to; HSTS when over HTTPS."""

    def __init__(self, app: ASGIApp, applies: Callable[[str], bool]) -> None:
        self.app, self.applies = app, applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https" or _forwarded_https(scope)
        is_static = scope.get("path", "").startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not is_static:
                    headers["Cache-Control"] = "no-store"
                if https:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, with_headers)


def _forwarded_https(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-proto":
            return bool(value.split(b",")[0].strip().lower() == b"https")
    return False
