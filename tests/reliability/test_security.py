"""Security beyond the API's route table (tests/api/test_auth.py) and the pages' access tests
(tests/web/test_access.py): tokens live in the database only as their SHA-256; every form of the
control centre, found from the app's routes rather than listed by hand, refuses a post without
its CSRF token; bodies over the limit are 413 on forms as on the API; every cookie is HttpOnly
and SameSite, and Secure over HTTPS; error answers of the pages carry the security headers.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from pages_support import CSRF, NOW, SCOPES, FakeLauncher, Pages, TestClient
from sqlalchemy import select

import fluxion_etl.web.pages
from fluxion_etl.api.app import MAX_BODY_BYTES, create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.settings import Settings
from fluxion_etl.store import audit, ledger, schedules, tokens
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.schema import api_tokens
from fluxion_etl.web.routes import is_web_path
from fluxion_etl.web.security import CONTENT_SECURITY_POLICY


@pytest.fixture
def pages(tmp_path: Path, _migrated_templates: dict[str, str]) -> Iterator[Pages]:
    """The app over a fresh SQLite copy, schedules seeded, a token per scope, a queued run."""
    shutil.copyfile(_migrated_templates["sqlite"], tmp_path / "web.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'web.db'}")
    services = ServiceContext(
        settings=Settings(session_secret="reliability-tests-session-secret"),  # type: ignore[arg-type]
        config=load_config(None),
        engine=engine,
        launcher=FakeLauncher(),
        clock=ManualClock(NOW),
    )
    with engine.begin() as conn:
        schedules.seed_schedules(conn, schedules.definitions_from_config(services.config), NOW)
        secrets = {
            scope: tokens.create_token(conn, name=scope, scope=tokens.Scope(scope), now=NOW).secret
            for scope in SCOPES
        }
        ledger.create_run(conn, RunRequest(job=Job.SALES, trigger=Trigger.CLI), now=NOW)
    with TestClient(create_app(services.settings, services=services)) as client:
        yield Pages(client, services, services.launcher, services.clock, secrets)  # type: ignore[arg-type]
    engine.dispose()


# --- tokens at rest ------------------------------------------------------------------------------


def test_the_database_holds_only_each_tokens_sha256(pages: Pages) -> None:
    pages.client.get("/api/etl/runs", headers={"Authorization": f"Bearer {pages.secrets['read']}"})
    pages.login("admin")
    with pages.engine.begin() as conn:
        assert tokens.revoke_token(conn, "trigger", now=NOW)
        again = tokens.create_token(conn, name="trigger", scope=tokens.Scope.TRIGGER, now=NOW)
        rows = [dict(row) for row in conn.execute(select(api_tokens)).mappings()]
        trail = [str(entry) for entry in audit.entries(conn)]
    secrets = [*pages.secrets.values(), again.secret]

    stored = {row["name"]: row["token_hash"] for row in rows}
    assert stored == {
        "read": _sha256(pages.secrets["read"]),
        "trigger": _sha256(again.secret),
        "admin": _sha256(pages.secrets["admin"]),
    }
    everything = repr(rows) + repr(trail)
    assert not [secret for secret in secrets if secret in everything]
    assert not [s for s in secrets if s.removeprefix(tokens.TOKEN_PREFIX) in everything]


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize("position", [0, 4, 20, -1])
def test_a_token_one_character_off_is_refused_wherever_the_difference_is(
    pages: Pages, position: int
) -> None:
    """The lookup is by the presented token's hash, then compared in constant time: how much of
    a guess matches a real token changes nothing, neither the answer nor the work done."""
    real = pages.secrets["admin"]
    chars = list(real)
    chars[position] = "A" if chars[position] != "A" else "B"
    near = "".join(chars)

    answer = pages.client.get("/api/etl/runs", headers={"Authorization": f"Bearer {near}"})

    assert answer.status_code == 401
    with pages.engine.connect() as conn:
        assert tokens.verify_token(conn, near) is None
        assert tokens.verify_token(conn, real) is not None


# --- forms ---------------------------------------------------------------------------------------


def web_forms() -> list[str]:
    """Every POST route of the control centre's page modules, path parameters filled with
    existing things: a form added to any page module is checked without editing this test."""
    found = []
    for module in pkgutil.iter_modules(fluxion_etl.web.pages.__path__):
        router = importlib.import_module(f"fluxion_etl.web.pages.{module.name}").router
        for route in router.routes:
            if isinstance(route, APIRoute) and "POST" in route.methods:
                found.append(route.path.replace("{run_id}", "1").replace("{name}", "sales"))
    return sorted(found)


def test_every_form_the_app_serves_refuses_a_post_without_its_csrf_token(pages: Pages) -> None:
    client = pages.login("admin")
    forms = web_forms()

    answers = {
        path: client.post(path, data={"job": "inventory"}, follow_redirects=False) for path in forms
    }

    assert len(forms) >= 10, forms
    refused = {path: a.status_code for path, a in answers.items() if path not in ("/lang",)}
    assert set(refused.values()) == {403}, refused
    assert "fluxion_lang" not in answers["/lang"].headers.get("set-cookie", "")
    with pages.engine.connect() as conn:
        assert [e.action for e in audit.entries(conn)] == ["web.login"]
    assert pages.launcher.launched == []


def test_the_login_form_refuses_a_post_without_its_csrf_token(pages: Pages) -> None:
    answer = pages.fresh_client().post(
        "/login", data={"token": pages.secrets["admin"]}, follow_redirects=False
    )

    assert answer.status_code == 403
    assert "fluxion_session" not in answer.headers.get("set-cookie", "")


# --- request size --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/runs/start", "/api/etl/sync"])
@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_a_body_over_the_limit_is_413_on_forms_and_the_api(
    pages: Pages, path: str, streamed: bool
) -> None:
    client = pages.login("admin")
    body = b"token=" + b"x" * (MAX_BODY_BYTES + 1)
    content = (body[i : i + 4096] for i in range(0, len(body), 4096)) if streamed else body
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"Bearer {pages.secrets['admin']}",
    }

    answer = client.post(path, content=content, headers=headers, follow_redirects=False)

    assert answer.status_code == 413
    assert answer.json()["success"] is False
    with pages.engine.connect() as conn:
        assert len(ledger.list_runs(conn, limit=10)) == 1, "nothing was started"
    if is_web_path(path):
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


# --- cookies and headers -------------------------------------------------------------------------


def cookies_set(client: TestClient, pages: Pages) -> list[str]:
    """Every Set-Cookie the control centre sends through a visit: the pre-login cookie, the
    language, the session, a flash message, the logout."""
    seen: list[str] = []

    def keep(answer: object) -> None:
        seen.extend(answer.headers.get_list("set-cookie"))  # type: ignore[attr-defined]

    keep(login_page := client.get("/login"))
    csrf = CSRF.search(login_page.text).group(1)  # type: ignore[union-attr]
    keep(client.post("/lang", data={"lang": "en", "csrf": csrf}, follow_redirects=False))
    keep(
        client.post(
            "/login",
            data={"token": pages.secrets["admin"], "csrf": csrf, "next": "/"},
            follow_redirects=False,
        )
    )
    csrf = CSRF.search(client.get("/").text).group(1)  # type: ignore[union-attr]
    keep(
        client.post("/runs/start", data={"job": "inventory", "csrf": csrf}, follow_redirects=False)
    )
    keep(client.post("/logout", data={"csrf": csrf}, follow_redirects=False))
    return seen


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_every_cookie_is_httponly_samesite_and_secure_over_https(pages: Pages, https: bool) -> None:
    base = "https://testserver" if https else "http://testserver"
    client = TestClient(pages.client.app, base_url=base)

    cookies = cookies_set(client, pages)

    names = {cookie.split("=", 1)[0] for cookie in cookies}
    assert {"fluxion_prelogin", "fluxion_lang", "fluxion_session", "fluxion_flash"} <= names
    for cookie in cookies:
        flags = {part.strip().split("=", 1)[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path"} <= flags, cookie
        assert re.search(r"samesite=(lax|strict)", cookie, re.IGNORECASE), cookie
        assert ("secure" in flags) is https, cookie
        assert not any(secret in cookie for secret in pages.secrets.values())


def test_error_answers_of_the_pages_carry_the_security_headers(pages: Pages) -> None:
    client = pages.login("read")
    answers = {
        "403 csrf": client.post("/runs/start", data={"job": "inventory"}),
        "403 scope": pages.post(client, "/runs/start", job="inventory"),
        "404": client.get("/runs/999999"),
        "redirect to login": pages.fresh_client().get("/runs", follow_redirects=False),
        "login refused": pages.fresh_client().post("/login", data={"token": "x"}),
    }

    for what, answer in answers.items():
        assert answer.status_code in (303, 401, 403, 404), what
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, what
        assert answer.headers["x-content-type-options"] == "nosniff", what
        assert answer.headers["x-frame-options"] == "DENY", what
