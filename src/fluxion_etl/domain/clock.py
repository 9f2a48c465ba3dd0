"""Clocks. Everything that reads the time takes a Clock, so tests and the soak control it.

A clock spec string lets several processes share one simulated time:
``system``, ``scaled:2026-01-05T10:00:00+00:00@1767607200.0x60`` (simulated start, the real
epoch second it corresponds to, speed factor), or ``file:60:/path/to/clock`` (a FileClock: the
simulated time another process publishes in that file, nominally 60 times real time).
"""

from __future__ import annotations

import threading
import time as _time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, UTC-aware."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds))

    def spec(self) -> str:
        return "system"


class ScaledClock:
    """Simulated time running ``speed`` times faster than real time from an anchor."""

    def __init__(self, start: datetime, speed: float = 1.0, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs an aware start time")
        self.start, self.speed = start.astimezone(UTC), speed
        self.anchor = _time.time() if anchor is None else anchor

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(_time.time() - self.anchor) * self.speed)

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds) / self.speed)

    def spec(self) -> str:
        return f"scaled:{self.start.isoformat()}@{self.anchor!r}x{self.speed!r}"


class FileClock:
    """Simulated time that one process publishes in a file and every other process reads.

    The publisher (the soak's timekeeper) writes the instant as POSIX seconds and replaces the file
    atomically; it may slow the time down or pause it, so a loaded machine never falls behind the
    simulated time its runs are judged by. ``speed`` is the nominal pace: ``sleep`` waits
    ``seconds / speed`` real seconds, as a ScaledClock does. Time read never goes backwards.
    """

    def __init__(self, path: str, speed: float = 1.0) -> None:
        self.path, self.speed = path, speed
        self._last = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with open(self.path, "rb") as published:
            value = float(published.read())
        with self._lock:
            self._last = max(self._last, value)
            return datetime.fromtimestamp(self._last, UTC)

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds) / self.speed)

    def spec(self) -> str:
        return f"file:{self.speed!r}:{self.path}"


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it (for single-threaded tests)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds, **kwargs)
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        _time.sleep(0)


def clock_from_spec(spec: str | None) -> Clock:
    """Build a clock from ``FLUXION_CLOCK`` (``system`` when empty)."""
    if not spec or spec == "system":
        return SystemClock()
    if spec.startswith("scaled:"):
        body = spec.removeprefix("scaled:")
        start_text, _, rest = body.partition("@")
        anchor_text, _, speed_text = rest.partition("x")
        return ScaledClock(
            datetime.fromisoformat(start_text),
            float(speed_text or 1),
            float(anchor_text) if anchor_text else None,
        )
    if spec.startswith("file:"):
        speed_text, _, path = spec.removeprefix("file:").partition(":")
        return FileClock(path, float(speed_text))
    raise ValueError(
        f"unknown clock spec {spec!r}: use 'system', 'scaled:START@EPOCHxSPEED' or "
        "'file:SPEED:PATH'"
    )


def real_seconds(
    clock_seconds: float, clock: Clock, *, floor: float = 0.05, cap: float = 60.0
) -> float:
    """How long to wait in real time for ``clock_seconds`` of ``clock``'s time to pass, kept within
    [floor, cap] so a very fast clock does not spin and a nearly frozen one still wakes up."""
    speed = float(getattr(clock, "speed", 1.0) or 1.0)
    return min(cap, max(floor, clock_seconds / speed))
