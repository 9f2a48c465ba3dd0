"""Answers leave in one write (``api.writes``): what is written in one loop turn is sent as one,
nothing is held past the turn, closing sends what is held; and ``serve`` answers that way."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import uvicorn
from api_support import served_config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from fluxion_etl.api.writes import HOLD_AT_MOST, CoalescingTransport, coalesced
from fluxion_etl.cli.service import bind_http
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.service import Service
from fluxion_etl.settings import Settings

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


@dataclass
class RecordingTransport:
    """The real transport's side: what was sent, in which calls."""

    sent: list[bytes] = field(default_factory=list)
    closed: bool = False
    eof: bool = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def on_a_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The async ``test`` run to the end on a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def _turn() -> None:
    await asyncio.sleep(0)


def _coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


@on_a_loop
async def test_the_writes_of_one_turn_are_sent_as_one_at_the_next() -> None:
    transport, real = _coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"{}")

    assert real.sent == []
    assert transport.get_write_buffer_size() == 21
    await _turn()
    assert real.sent == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    assert transport.get_write_buffer_size() == 0


@on_a_loop
async def test_nothing_is_held_past_the_turn_it_was_written_in() -> None:
    transport, real = _coalescing()
    transport.write(b"chunk 1")
    await _turn()
    transport.write(b"chunk 2")
    await _turn()

    assert real.sent == [b"chunk 1", b"chunk 2"]


@on_a_loop
async def test_closing_sends_what_is_held_first() -> None:
    transport, real = _coalescing()
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.close()

    assert real.sent == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert real.closed
    await _turn()  # the flush already scheduled finds nothing to send
    assert real.sent == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]


@on_a_loop
async def test_write_eof_sends_what_is_held_first() -> None:
    transport, real = _coalescing()
    transport.writelines([b"a", b"", b"b"])
    transport.write_eof()

    assert real.sent == [b"ab"]
    assert real.eof


@on_a_loop
async def test_more_than_a_turns_worth_is_sent_at_once() -> None:
    """A large body is not held: the real transport (and its flow control) gets it now."""
    transport, real = _coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    body = b"x" * HOLD_AT_MOST

    transport.write(body)

    assert real.sent == [b"HTTP/1.1 200 OK\r\n\r\n" + body]
    assert transport.get_write_buffer_size() == 0
    transport.write(b"after")
    await _turn()
    assert real.sent[1:] == [b"after"]


@on_a_loop
async def test_a_buffer_reused_after_writing_is_sent_as_it_was_written() -> None:
    transport, real = _coalescing()
    buffer = bytearray(b"first")
    transport.write(buffer)
    buffer[:] = b"later"
    transport.write(memoryview(b"!"))
    await _turn()

    assert real.sent == [b"first!"]


@on_a_loop
async def test_what_is_held_when_the_peer_is_gone_is_dropped() -> None:
    transport, real = _coalescing()
    transport.write(b"answer")
    real.closed = True  # the connection was lost meanwhile
    await _turn()

    assert real.sent == []


@on_a_loop
async def test_everything_else_is_the_real_transports() -> None:
    transport, real = _coalescing()

    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert not transport.is_closing()
    real.closed = True
    assert transport.is_closing()


# --- over loopback, through uvicorn ---------------------------------------------------------------


async def _small(request: Request) -> JSONResponse:
    return JSONResponse({"success": True, "echo": (await request.body()).decode()})


async def _streamed(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"chunk {n};".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(routes=[Route("/small", _small, methods=["POST"]), Route("/stream", _streamed)])


@contextmanager
def _served(config: uvicorn.Config) -> Iterator[int]:
    with served_config(config) as url:
        yield int(url.rsplit(":", 1)[1])


def _coalesced_config(http: str) -> uvicorn.Config:
    config = uvicorn.Config(APP, port=0, http=http, log_level="warning", lifespan="off")
    config.load()
    config.http_protocol_class = coalesced(config.http_protocol_class)
    return config


def _exchange(port: int, request: bytes, *, until: bytes) -> list[bytes]:
    """Send ``request`` and return what each ``recv`` brought, until ``until`` was seen."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(request)
        received: list[bytes] = []
        while until not in b"".join(received):
            data = conn.recv(65536)
            assert data, f"connection closed early after {received!r}"
            received.append(data)
        return received


def _post(body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"POST /small HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}"
    )
    return head.encode() + b"\r\n" + body


class SocketWrites:
    """The transport uvicorn was given, recording each write that reaches it."""

    writes: ClassVar[list[bytes]] = []

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        SocketWrites.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _recording(protocol: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    class Recording(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(SocketWrites(transport))  # type: ignore[arg-type]

    return Recording


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_each_answer_is_one_write_to_the_socket(http: str) -> None:
    """uvicorn writes a head, then a body; the socket gets one write holding both."""
    config = uvicorn.Config(APP, port=0, http=http, log_level="warning", lifespan="off")
    config.load()
    config.http_protocol_class = coalesced(_recording(config.http_protocol_class))
    SocketWrites.writes = []
    with _served(config) as port:
        for n in range(5):
            (answer,) = _exchange(port, _post(b"ping %d" % n), until=b"}")
            assert answer.endswith(b'{"success":true,"echo":"ping %d"}' % n)

    assert len(SocketWrites.writes) == 5
    for n, write in enumerate(SocketWrites.writes):
        assert write.startswith(b"HTTP/1.1 200 OK")
        assert write.endswith(b'"ping %d"}' % n)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_keep_alive_streamed_and_closing_answers_are_whole(http: str) -> None:
    with _served(_coalesced_config(http)) as port:
        two = _post(b"one") + _post(b"two")  # pipelined on one connection
        received = b"".join(_exchange(port, two, until=b'"two"}'))
        assert received.count(b"HTTP/1.1 200 OK") == 2

        stream = b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n"
        streamed = b"".join(_exchange(port, stream, until=b"0\r\n\r\n"))
        assert all(f"chunk {n};".encode() in streamed for n in range(3))

        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(_post(b"bye", close=True))
            answer = b""
            while data := conn.recv(65536):  # the server closes after answering
                answer += data
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b'"bye"}')


def test_serve_answers_through_the_coalesced_protocol(migrated_url: str) -> None:
    settings = Settings(database_url=migrated_url, scheduler="external")  # type: ignore[call-arg]
    service = Service.open(settings, load_config(None), ManualClock(NOW))
    try:
        bound = bind_http(service, "127.0.0.1", 0)
        assert bound.server.config.http_protocol_class.__name__.startswith("Coalesced")
        port = bound.sock.getsockname()[1]
        thread = threading.Thread(target=bound.server.run, kwargs={"sockets": [bound.sock]})
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not bound.server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            get = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
            (answer,) = _exchange(port, get, until=b"}")
            assert answer.startswith(b"HTTP/1.1 200 OK")
        finally:
            bound.server.should_exit = True
            thread.join(timeout=10)
    finally:
        service.stop(grace=1)
