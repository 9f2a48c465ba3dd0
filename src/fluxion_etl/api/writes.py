"""Answers leave in one write: uvicorn's HTTP protocol with its writes gathered per loop turn.

uvicorn writes an answer's head and its body with two ``transport.write`` calls, and uvloop sends
each at once: two ``send`` system calls and two TCP segments per answer, and a client that wakes
for the head, then again for the body. Under a burst of triggers those writes were about a sixth
of the event loop's time (py-spy, bench/service.py). ``coalesced(protocol)`` gives a protocol
class whose transport holds what is written during one turn of the event loop and sends it as
one write at the start of the next (``call_soon``): an answer's head and body leave together.

Nothing is held longer than the turn, nor more than ``HOLD_AT_MOST`` bytes: a streamed answer
that awaits between its chunks still sends each chunk when it awaits, a large body goes out at
once (the real transport's flow control sees it as it always did), and ``close`` sends what is
held before closing. Everything else is the real transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

HOLD_AT_MOST = 64 * 1024  # bytes held for the next turn; more is sent at once


class CoalescingTransport:
    """``transport`` with the writes of one loop turn sent as one. Everything but writing and
    closing is the real transport's."""

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        first = not self._held
        # a copy of anything mutable: the caller may reuse its buffer once write returns
        self._held.append(data if type(data) is bytes else bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes > HOLD_AT_MOST:
            self.flush()
        elif first:
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Send what is held, unless the connection is closing (its peer is gone)."""
        held, self._held, self._held_bytes = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def coalesced(protocol: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """``protocol`` (one of uvicorn's HTTP protocols: it keeps its transport as ``transport`` and
    its loop as ``loop``) writing through a ``CoalescingTransport``."""

    class Coalesced(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            # what the protocol writes to (the transport it was given, unless it wrapped that)
            kept: asyncio.Transport = self.transport  # type: ignore[has-type]
            self.transport = CoalescingTransport(kept, self.loop)

    Coalesced.__name__ = Coalesced.__qualname__ = f"Coalesced{protocol.__name__}"
    return Coalesced
