"""Who may see and change what: sessions from tokens, CSRF on every form, scopes, revocation,
cookie flags and security headers. No browser needed: FastAPI's TestClient over the real app."""

from __future__ import annotations

import base64

import pytest
from pages_support import Pages
from sqlalchemy import func, select

from fluxion_etl.store import audit, ledger, schedules, tokens
from fluxion_etl.store.schema import runs
from fluxion_etl.web.auth import SESSION_COOKIE
from fluxion_etl.web.security import CONTENT_SECURITY_POLICY

PAGES = ("/", "/runs", "/runs/1", "/schedules", "/gaps", "/locations")
FORMS = (
    ("/runs/start", {"job": "inventory"}),
    ("/runs/1/rerun", {}),
    ("/runs/1/cancel", {}),
    ("/schedules/sales/enabled", {"enabled": "false"}),
    ("/schedules/sales/trigger", {}),
    ("/gaps/recover", {}),
    ("/locations/check", {}),
    ("/logout", {}),
)


def _nothing_changed(pages: Pages) -> None:
    """No run, no schedule change, no launch, nothing in the audit trail but logins."""
    with pages.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0
        stored = schedules.get_schedule(conn, "sales")
        assert stored is not None
        assert stored.definition.enabled
        assert {e.action for e in audit.entries(conn)} <= {"web.login"}
    assert pages.launcher.launched == []


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_login(pages: Pages, path: str) -> None:
    answer = pages.fresh_client().get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_every_form_without_a_session_is_refused(pages: Pages) -> None:
    client = pages.fresh_client()
    for path, fields in FORMS:
        answer = client.post(path, data={**fields, "csrf": "guess"}, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), path
    _nothing_changed(pages)


@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
def test_every_form_without_its_csrf_token_is_refused(pages: Pages, csrf: str | None) -> None:
    client = pages.login("admin")
    for path, fields in FORMS:
        data = fields if csrf is None else {**fields, "csrf": csrf}
        answer = client.post(path, data=data, follow_redirects=False)
        assert answer.status_code == 403, path
        assert "código de seguridad" in answer.text
    _nothing_changed(pages)


def test_a_csrf_token_of_another_session_is_refused(pages: Pages) -> None:
    mine, theirs = pages.login("admin"), pages.login("admin")
    stolen = pages.csrf(theirs)
    answer = mine.post("/runs/start", data={"job": "inventory", "csrf": stolen})
    assert answer.status_code == 403
    _nothing_changed(pages)


def test_a_read_token_sees_every_page_but_changes_nothing(pages: Pages) -> None:
    client = pages.login("read")
    for path in PAGES:
        assert client.get(path).status_code in (200, 404), path
    csrf = pages.csrf(client)
    for path, fields in FORMS[:-1]:
        answer = client.post(path, data={**fields, "csrf": csrf}, follow_redirects=False)
        assert answer.status_code == 403, path
        assert "«trigger»" in answer.text or "«admin»" in answer.text
    _nothing_changed(pages)


def test_a_trigger_token_starts_runs_but_cannot_switch_schedules(pages: Pages) -> None:
    client = pages.login("trigger")
    csrf = pages.csrf(client)
    off = client.post("/schedules/sales/enabled", data={"enabled": "false", "csrf": csrf})
    assert off.status_code == 403
    started = client.post(
        "/runs/start", data={"job": "sales", "location": "tienda_02", "csrf": csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert started.status_code == 303
    run_id = int(started.headers["location"].rsplit("/", 1)[1])
    with pages.engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        trail = audit.entries(conn, action="run.trigger")
    assert run is not None
    assert (run.requested_by, run.scope, run.job.value) == ("trigger", ("tienda_02",), "sales")
    assert [(e.actor, e.target) for e in trail] == [("trigger", f"run:{run_id}")]
    assert pages.launcher.launched == [run_id]


def test_a_revoked_token_ends_its_sessions_at_once(pages: Pages) -> None:
    client = pages.login("admin")
    assert client.get("/").status_code == 200
    with pages.engine.begin() as conn:
        tokens.revoke_token(conn, "admin", now=pages.clock.now())
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")


def test_a_token_created_again_under_the_same_name_does_not_revive_old_sessions(
    pages: Pages,
) -> None:
    client = pages.login("admin")
    with pages.engine.begin() as conn:
        tokens.revoke_token(conn, "admin", now=pages.clock.now())
        tokens.create_token(conn, name="admin", scope=tokens.Scope.ADMIN, now=pages.clock.now())
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_not_a_session(pages: Pages) -> None:
    client = pages.login("read")
    value = client.cookies[SESSION_COOKIE]
    body, mac = value.split(".")
    payload = base64.urlsafe_b64decode(body + "==").replace(b'"read"', b'"admin"')
    forged = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + mac
    client.cookies.set(SESSION_COOKIE, forged)
    assert client.get("/", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_samesite_and_holds_no_token(pages: Pages) -> None:
    client = pages.fresh_client()
    csrf = pages.csrf(client, "/login")
    answer = client.post(
        "/login",
        data={"token": pages.secrets["admin"], "csrf": csrf, "next": "/"},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back
    value = cookie.split(";")[0].split("=", 1)[1]
    decoded = base64.urlsafe_b64decode(value.split(".")[0] + "==")
    assert pages.secrets["admin"] not in value
    assert pages.secrets["admin"].encode() not in decoded


def test_the_session_cookie_is_secure_behind_an_https_proxy(pages: Pages) -> None:
    client = pages.fresh_client()
    csrf = pages.csrf(client, "/login")
    answer = client.post(
        "/login",
        data={"token": pages.secrets["admin"], "csrf": csrf, "next": "/"},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert "Secure" in answer.headers["set-cookie"]
    assert "Strict-Transport-Security" in answer.headers


def test_a_wrong_token_is_refused_and_starts_no_session(pages: Pages) -> None:
    client = pages.fresh_client()
    csrf = pages.csrf(client, "/login")
    answer = client.post("/login", data={"token": "flx_nope", "csrf": csrf})
    assert answer.status_code == 401
    assert "revocado" in answer.text
    assert SESSION_COOKIE not in client.cookies


def test_the_login_form_needs_its_own_csrf_token(pages: Pages) -> None:
    """Another site cannot log a visitor in under a token of its choosing."""
    answer = pages.fresh_client().post(
        "/login", data={"token": pages.secrets["admin"], "csrf": "x"}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_login_returns_only_to_a_page_of_this_site(pages: Pages) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        client = pages.fresh_client()
        csrf = pages.csrf(client, "/login")
        answer = client.post(
            "/login",
            data={"token": pages.secrets["read"], "csrf": csrf, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/", target


@pytest.mark.parametrize("path", ["/login", "/", "/runs", "/static/fluxion.css"])
def test_pages_carry_the_security_headers(pages: Pages, path: str) -> None:
    answer = pages.login("read").get(path)
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"


def test_pages_have_no_inline_script_or_style_the_policy_would_block(pages: Pages) -> None:
    client = pages.login("admin")
    for path in ("/login", *PAGES[:1], "/runs", "/schedules", "/gaps", "/locations"):
        html = client.get(path).text
        assert "<script>" not in html
        assert "style=" not in html
        assert "<style" not in html
        assert " on" + "click=" not in html


def test_the_api_keeps_its_own_headers(pages: Pages) -> None:
    """The OpenAPI page loads Swagger UI from a CDN: the pages' policy must not break it."""
    assert "content-security-policy" not in pages.client.get("/docs").headers


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/runs?offset=abc", 422, "La dirección tiene un valor incorrecto (offset: "),
        ("GET", "/gaps?days=abc", 422, "La dirección tiene un valor incorrecto (days: "),
        ("GET", "/schedules/nope/edit", 404, "No existe esa página."),
        ("POST", "/runs", 405, "Esta dirección no admite esa petición"),
    ],
)
def test_an_address_refused_before_any_page_runs_is_answered_with_a_page(
    pages: Pages, method: str, path: str, status: int, text: str
) -> None:
    """In the page's language (Spanish by default), not the API's JSON."""
    client = pages.login("read")

    answer = client.request(method, path)

    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert text in answer.text
    assert (
        client.get("/api/etl/runs?offset=abc")
        .headers["content-type"]
        .startswith("application/json")
    )


def test_a_runs_filter_on_an_invalid_day_says_so_instead_of_listing_every_run(
    pages: Pages,
) -> None:
    client = pages.login("read")

    answer = client.get("/runs?day=2026-99-99", follow_redirects=False)

    assert (answer.status_code, answer.headers["location"]) == (303, "/runs")
    assert "Fecha no válida." in client.get("/runs").text
