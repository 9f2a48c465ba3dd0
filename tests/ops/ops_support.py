"""Helpers of the operations tests: a small simulated chain (three stores) served over loopback,
runs through the one runner at simulated times, a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig, parse_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.engine.submit import submit
from fluxion_etl.klk.client import KlkClient, RequestEvent
from fluxion_etl.settings import Settings
from fluxion_etl.sim.faults import FaultPlan, parse_faults
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.topology import chain_config_toml
from fluxion_etl.sim.world import SimWorld
from fluxion_etl.store import ledger
from fluxion_etl.store.ledger import RunRow

CARACAS = ZoneInfo("America/Caracas")
TODAY = date(2025, 11, 17)  # a Monday; stores open 07:00-21:00
STORES = ("tienda_01", "tienda_02", "tienda_03")


def local(day: date, hour: int, minute: int = 0) -> datetime:
    """An aware instant at ``hour:minute`` Caracas time on ``day``."""
    return datetime.combine(day, time(hour, minute), tzinfo=CARACAS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_settings(database_url: str, klk_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "klk_base_url": klk_url,
        "klk_connect_timeout": 2.0,
        "klk_catalogue_read_timeout": 10.0,
        "klk_sales_read_timeout": 10.0,
        "klk_retry_attempts": 2,
        "klk_retry_initial_wait": 0.01,
        "klk_retry_max_wait": 0.02,
        "concurrency": 3,
        "heartbeat_seconds": 0.2,
        **overrides,
    }
    return Settings(**values)


def chain_config(world: SimWorld, alerts_toml: str = "") -> ChainConfig:
    text = chain_config_toml(world.locations) + "\n" + alerts_toml
    return parse_config(tomllib.loads(text), "<ops tests>")


@dataclass
class Chain:
    """A simulated chain on loopback and a database, on one manual clock."""

    engine: Engine
    world: SimWorld
    plan: FaultPlan
    clock: ManualClock
    url: str
    config: ChainConfig
    settings: Settings
    on_request: Callable[[RequestEvent], None] | None = None
    _clients: list[KlkClient] = field(default_factory=list)

    def runtime(self) -> Runtime:
        klk = KlkClient.from_settings(self.settings, on_request=self.on_request)
        self._clients.append(klk)
        return Runtime(
            settings=self.settings,
            config=self.config,
            engine=self.engine,
            klk=klk,
            clock=self.clock,
        )

    def fault(self, spec: str) -> None:
        self.plan.add(parse_faults(spec))

    def worker_env(self, directory: Path) -> dict[str, str]:
        """The ``FLUXION_`` settings of a worker process for this chain (its config written to
        ``directory``): JSON logs, on the system clock."""
        config_file = directory / "chain.toml"
        config_file.write_text(chain_config_toml(self.world.locations), "utf-8")
        return {
            "FLUXION_DATABASE_URL": self.engine.url.render_as_string(hide_password=False),
            "FLUXION_KLK_BASE_URL": self.url,
            "FLUXION_CONFIG": str(config_file),
            "FLUXION_LOG_FORMAT": "json",
            "FLUXION_CLOCK": "system",
        }

    def run(self, job: Job, *, at: datetime | None = None, **request: Any) -> RunRow:
        """Submit and execute one run at ``at`` (simulated); returns what the ledger says."""
        if at is not None:
            self.clock.set(at)
        rt = self.runtime()
        ask = RunRequest(job=job, trigger=request.pop("trigger", Trigger.SCHEDULE), **request)
        result = submit(rt.engine, ask, config=rt.config, settings=rt.settings, clock=rt.clock)
        execute_run(rt, result.run_id)
        return run_row(self.engine, result.run_id)

    def close(self) -> None:
        for client in self._clients:
            client.close()


def run_row(engine: Engine, run_id: int) -> RunRow:
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
    assert run is not None
    return run


@contextmanager
def simulated_chain(
    engine: Engine,
    *,
    start: datetime,
    lines_per_day: int = 50,
    alerts_toml: str = "",
    **settings: Any,
) -> Iterator[Chain]:
    clock = ManualClock(start)
    world = SimWorld(locations=3, skus=50, lines_per_day=lines_per_day, seed=7, clock=clock)
    plan = FaultPlan(seed=world.seed)
    with running_simulator(world, plan) as url:
        chain = Chain(
            engine=engine,
            world=world,
            plan=plan,
            clock=clock,
            url=url,
            config=chain_config(world, alerts_toml),
            settings=fast_settings(str(engine.url), url, **settings),
        )
        try:
            yield chain
        finally:
            chain.close()


# --- a real SMTP server and a real webhook receiver on loopback ---------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[Message]]]:
    """aiosmtpd on 127.0.0.1; yields its port and the messages it received."""
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, inbox.messages
    finally:
        controller.stop()


@contextmanager
def webhook_receiver(status: int = 200) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny HTTP server on loopback; yields its URL and the JSON bodies posted to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self) -> None:
            received.append({"ping": self.path})
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def alerts_toml(*, smtp_port: int | None = None, webhook: str | None = None, **options: Any) -> str:
    """An ``[alerts]`` section with the given channels and options."""
    lines = ["[alerts]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    if smtp_port is not None:
        lines += [
            "[[alerts.channels]]",
            'kind = "smtp"',
            'host = "127.0.0.1"',
            f"port = {smtp_port}",
            'sender = "fluxion@example.com"',
            'recipients = ["ops@example.com"]',
        ]
    if webhook is not None:
        lines += ["[[alerts.channels]]", 'kind = "webhook"', f"url = {json.dumps(webhook)}"]
    return "\n".join(lines) + "\n"


def every(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    moment = start
    while moment <= end:
        yield moment
        moment += step


@dataclass
class NullLauncher:
    """A launcher that launches nothing (the tests execute runs themselves)."""

    name: str = "none"
    launched: list[int] = field(default_factory=list)
    hands_off_in_process: bool = True

    def launch(self, run_id: int) -> None:
        self.launched.append(run_id)

    def holds(self, run_id: int) -> bool:
        return False

    def poll(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def close(self, grace: float) -> None:
        pass
