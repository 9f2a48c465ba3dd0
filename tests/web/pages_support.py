"""Control centre test support without a browser: the app in a TestClient with a fake launcher,
a token per scope, and helpers to log in and read a page's CSRF field."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime

from httpx import Response
from sqlalchemy import Engine

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.launchers import LaunchError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# Monday 2026-01-05 10:00 in Caracas: stores are open.
NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
SCOPES = ("read", "trigger", "admin")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class FakeLauncher:
    """Records what it was asked to launch; ``broken`` makes every hand-off fail."""

    name: str = "fake"
    broken: bool = False
    launched: list[int] = field(default_factory=list)
    hands_off_in_process: bool = True

    def launch(self, run_id: int) -> None:
        if self.broken:
            raise LaunchError("no capacity")
        self.launched.append(run_id)

    def holds(self, run_id: int) -> bool:
        return False

    def poll(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def close(self, grace: float) -> None:
        pass


@dataclass
class Pages:
    """The app in a TestClient, one token per scope, and helpers to log in and post forms."""

    client: TestClient
    services: ServiceContext
    launcher: FakeLauncher
    clock: ManualClock
    secrets: dict[str, str]

    @property
    def engine(self) -> Engine:
        return self.services.engine

    def fresh_client(self) -> TestClient:
        return TestClient(self.client.app)

    def login(self, scope: str, client: TestClient | None = None) -> TestClient:
        """A client logged in with the token of ``scope`` (a new one unless given)."""
        client = client or self.fresh_client()
        csrf = self.csrf(client, "/login")
        answer = client.post(
            "/login",
            data={"token": self.secrets[scope], "csrf": csrf, "next": "/"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        return client

    def post(self, client: TestClient, path: str, **fields: str) -> Response:
        """Post a form the way its page would: with the session's CSRF token."""
        data = {**fields, "csrf": self.csrf(client)}
        return client.post(path, data=data, follow_redirects=False)

    @staticmethod
    def csrf(client: TestClient, path: str = "/") -> str:
        page = client.get(path)
        found = CSRF.search(page.text)
        assert found, f"no CSRF field on {path}: {page.status_code}"
        return found.group(1)
