"""Fixtures of the KLK client tests: a real HTTP server on loopback, and a port that refuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from loopback_server import LoopbackKlk, serve


@pytest.fixture
def loopback_klk() -> Iterator[LoopbackKlk]:
    yield from serve(LoopbackKlk())


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
