"""API test support: a fake launcher, the service context and one token per scope."""

from __future__ import annotations

import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from fluxion_etl.api.app import create_app
from fluxion_etl.api.context import ServiceContext
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.launchers import LaunchError
from fluxion_etl.settings import Settings
from fluxion_etl.store import tokens
from fluxion_etl.store.db import create_db_engine

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx; the client works the same
    from fastapi.testclient import TestClient

# Monday 2026-01-05 10:00 in Caracas: stores are open.
NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
SCOPES = ("read", "trigger", "admin")


@dataclass
class FakeLauncher:
    """Records what it was asked to launch; can be told to fail or to be dead."""

    name: str = "fake"
    launched: list[int] = field(default_factory=list)
    fail_with: str | None = None
    is_alive: bool = True
    hands_off_in_process: bool = True  # False: the API hands runs off in a worker thread

    def launch(self, run_id: int) -> None:
        if self.fail_with is not None:
            raise LaunchError(self.fail_with)
        self.launched.append(run_id)

    def holds(self, run_id: int) -> bool:
        return False

    def poll(self) -> None:
        pass

    def alive(self) -> bool:
        return self.is_alive

    def close(self, grace: float) -> None:
        self.is_alive = False


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    services: ServiceContext
    launcher: FakeLauncher
    clock: ManualClock
    secrets: dict[str, str]

    def auth(self, scope: str | None) -> dict[str, str]:
        return {} if scope is None else {"Authorization": f"Bearer {self.secrets[scope]}"}


@contextmanager
def served_on_loopback(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    with served_config(config) as url:
        yield url


@contextmanager
def served_config(config: uvicorn.Config) -> Iterator[str]:
    """uvicorn serving ``config`` (its port 0: a free one) in a thread; yields its base URL."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def copied_sqlite(template: Path, path: Path) -> Iterator[Engine]:
    """A fresh database at the current schema: a copy of ``template`` at ``path``."""
    shutil.copyfile(template, path)
    eng = create_db_engine(f"sqlite:///{path}")
    try:
        yield eng
    finally:
        eng.dispose()


def make_services(engine: Engine, clock: ManualClock, launcher: FakeLauncher) -> ServiceContext:
    return ServiceContext(
        settings=Settings(),
        config=load_config(None),
        engine=engine,
        launcher=launcher,
        clock=clock,
    )


def make_tokens(engine: Engine, now: datetime) -> dict[str, str]:
    """One token per scope, named after it."""
    with engine.begin() as conn:
        return {
            scope: tokens.create_token(conn, name=scope, scope=tokens.Scope(scope), now=now).secret
            for scope in SCOPES
        }


def build_api(engine: Engine) -> Iterator[Api]:
    clock, launcher = ManualClock(NOW), FakeLauncher()
    services = make_services(engine, clock, launcher)
    secrets = make_tokens(engine, NOW)
    app = create_app(services.settings, services=services)
    with TestClient(app) as client:
        yield Api(app, client, services, launcher, clock, secrets)
