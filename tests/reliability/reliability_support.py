"""Helpers of the reliability tests: a PostgreSQL database reached as a role with a password, an
SMTP server that takes a login, an HTTP receiver, and a TCP proxy that can be paused (a database
that goes away and comes back)."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import create_engine, text
from tests.conftest import PG_ADMIN_URL, require_postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL nobody listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


# --- PostgreSQL as a role with a password ---------------------------------------------------------


@dataclass(frozen=True)
class PgDatabase:
    name: str
    role: str
    password: str

    def url(self, *, host: str = "127.0.0.1", port: int = 5432) -> str:
        return f"postgresql+psycopg://{self.role}:{self.password}@{host}:{port}/{self.name}"

    @property
    def admin_url(self) -> str:
        """The same database as the superuser of the tests."""
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"


@contextmanager
def pg_database_with_password() -> Iterator[PgDatabase]:
    """A fresh database owned by a fresh login role with a password; both dropped afterwards."""
    require_postgres()
    tag = uuid.uuid4().hex[:10]
    db = PgDatabase(f"fluxion_r_{tag}", f"fluxion_r_{tag}", f"S3cr3t-pg-{uuid.uuid4().hex}")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE ROLE \"{db.role}\" LOGIN PASSWORD '{db.password}'"))
            conn.execute(text(f'CREATE DATABASE "{db.name}" OWNER "{db.role}"'))
        yield db
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{db.role}"'))
        admin.dispose()


# --- an SMTP server that takes a login --------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)


@contextmanager
def smtp_server_with_login() -> Iterator[Mailbox]:
    """aiosmtpd on loopback, AUTH offered without TLS (as a relay on a private network would)."""
    box = Mailbox(free_port())
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# --- an HTTP receiver (webhooks, dead-man pings) ----------------------------------------------


@dataclass
class Receiver:
    """What was sent to it; the first ``failures`` requests are refused with a page that echoes
    the path, as many web frameworks do ("Cannot POST /hooks/...")."""

    url: str
    failures: int
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)


@contextmanager
def http_receiver(failures: int = 0) -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}", failures)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.requests.append((self.command, self.path, self.rfile.read(length)))
            refused = len(receiver.requests) <= receiver.failures
            body = f"Cannot {self.command} {self.path}".encode() if refused else b"ok"
            self.send_response(404 if refused else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- a TCP proxy that can be paused -------------------------------------------------------------


class PausableProxy:
    """A loopback TCP proxy to ``target``. ``pause()`` cuts every open connection and refuses new
    ones (the database is gone, as after a network partition or a crash); ``resume()`` lets them
    through again. Runs its own asyncio loop in a thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def pause(self) -> None:
        self._call(self._close_all())

    def resume(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        self.pause()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when the peer vanishes
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with suppress(OSError):
            writer.close()
        self._writers.discard(writer)


@contextmanager
def pausable_proxy(
    target_host: str = "127.0.0.1", target_port: int = 5432
) -> Iterator[PausableProxy]:
    proxy = PausableProxy(target_host, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
