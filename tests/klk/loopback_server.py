"""A real HTTP server on loopback for the KLK client tests: scripted answers, recorded requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"{}"
    hang: bool = False


@dataclass
class LoopbackKlk:
    """Answers every request to ``path`` with ``answers[path]``; a hanging answer waits until the
    test ends (``release``), so the client's read timeout is what ends the call."""

    base_url: str = ""
    answers: dict[str, Answer] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def handler_for(state: LoopbackKlk) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.received.append(
                Received(
                    self.command, url.path, parse_qs(url.query), self.headers["Content-Type"], body
                )
            )
            answer = state.answers.get(url.path, Answer(404, b"not found"))
            if answer.hang:
                state.release.wait(30)
                return
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    return Handler


def serve(state: LoopbackKlk) -> Iterator[LoopbackKlk]:
    """Serve ``state`` on 127.0.0.1 (a free port) until the generator is closed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
