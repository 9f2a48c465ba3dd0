"""A real control centre to drive: ``fluxion-etl serve`` in a child process over a fresh database,
against the KLK simulator on loopback, and Debian's Chromium through Playwright.

The browser tests and ``scripts/screenshots.py`` both use this module, so the README's pictures
come from the same setup the tests check.

    with running_stack(db_url, tmp_dir) as stack:    # service + simulator + admin token
        with chromium() as browser:                   # /usr/bin/chromium, fresh profile
            page = browser.new_page(); stack.login(page)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from fluxion_etl.domain.clock import ScaledClock
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld
from fluxion_etl.store import tokens
from fluxion_etl.store.db import create_db_engine

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CARACAS = ZoneInfo("America/Caracas")
# Wednesday 19 November 2025, 11:20 in Caracas: every store is open, two whole days behind us.
DEFAULT_START = datetime(2025, 11, 19, 11, 20, tzinfo=CARACAS)
SERVING = "fluxion-etl serving on "
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh throw-away profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Stack:
    """The running service and simulator, and a way to call both."""

    url: str
    sim_url: str
    token: str
    database_url: str
    clock: ScaledClock
    log_path: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def sim(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.sim_url + path, timeout=30, **kwargs)

    def today(self) -> date:
        return self.clock.now().astimezone(CARACAS).date()

    def wait_run(self, run_id: int, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/api/etl/runs/{run_id}").json()
            if run["status"] not in ("queued", "running"):
                return dict(run)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish within {timeout} s:\n{self.log_tail()}")

    def sync(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Start a run through the API and wait for it to end."""
        answer = self.api("POST", path, json=body)
        assert answer.status_code == 202, answer.text
        return self.wait_run(int(answer.json()["run_id"]))

    def faults(self, spec: str) -> None:
        answer = self.sim("POST", "/_sim/faults", json={"faults": spec, "mode": "replace"})
        assert answer.status_code == 200, answer.text

    def login(self, page: Any, next_path: str = "/") -> None:
        page.goto(f"{self.url}/login?next={next_path}")
        page.fill("#token", self.token)
        page.click("form[action='/login'] button")
        page.wait_for_url(f"{self.url}{next_path}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _admin_token(database_url: str, now: datetime) -> str:
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            created = tokens.create_token(conn, name="ops.admin", scope=tokens.Scope.ADMIN, now=now)
        return created.secret
    finally:
        engine.dispose()


@contextmanager
def running_stack(
    database_url: str,
    directory: Path,
    *,
    locations: int = 4,
    skus: int = 50,
    lines_per_day: int = 100,
    start: datetime = DEFAULT_START,
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """The simulator in this process, ``fluxion-etl serve`` in a child, one shared clock."""
    clock = ScaledClock(start, 1.0)
    world = SimWorld(
        locations=locations, skus=skus, lines_per_day=lines_per_day, seed=7, clock=clock
    )
    config = directory / "chain.toml"
    config.write_text(world.chain_config_toml(locations), encoding="utf-8")
    token = _admin_token(database_url, clock.now())
    with running_simulator(world) as sim_url:
        child_env = {
            **os.environ,
            "FLUXION_DATABASE_URL": database_url,
            "FLUXION_KLK_BASE_URL": sim_url,
            "FLUXION_CONFIG": str(config),
            "FLUXION_CLOCK": clock.spec(),
            "FLUXION_LEASE_TTL_SECONDS": "10",
            "FLUXION_HEARTBEAT_SECONDS": "1",
            "FLUXION_KLK_RETRY_ATTEMPTS": "1",
            "FLUXION_AUTO_RECOVER": "false",
            "FLUXION_SESSION_SECRET": "browser-tests-session-secret",
            "FLUXION_LOG_FORMAT": "json",
            **(env or {}),
        }
        log_path = directory / "serve.log"
        with _serve(child_env, log_path) as url:
            yield Stack(url, sim_url, token, database_url, clock, log_path)


@contextmanager
def _serve(env: dict[str, str], log_path: Path) -> Iterator[str]:
    args = [sys.executable, "-m", "fluxion_etl", "serve", "--port", "0", "--grace", "2"]
    with log_path.open("w") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = _wait_ready(process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fluxion-etl serve exited:\n{log_path.read_text()}")
        text = log_path.read_text(errors="replace")
        if url is None and SERVING in text:
            url = text.split(SERVING, 1)[1].split()[0]
        if url is not None and _ready(url):
            return url
        time.sleep(0.1)
    raise RuntimeError(f"fluxion-etl serve did not become ready:\n{log_path.read_text()}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
