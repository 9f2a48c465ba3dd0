"""What processing one location produced, and the failure that stops it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase
from fluxion_etl.errors import FluxionError


class LocationFailure(FluxionError):
    """One location's part of a run failed; nothing of it was loaded (SPEC §4.4)."""

    def __init__(
        self,
        category: ErrorCategory | None,
        phase: ErrorPhase,
        message: str,
        *,
        raw: bytes | None = None,
        call: str | None = None,
        timings: Mapping[str, int] | None = None,
    ) -> None:
        self.category, self.phase, self.message = category, phase, message
        self.raw, self.call = raw, call
        self.timings = timings  # the location's phase times until it failed, when known
        super().__init__(f"{phase.value}: {self.category_value or 'internal'}: {message}")

    @property
    def category_value(self) -> str | None:
        """None only for an internal error (a bug), which fits none of SPEC §4's categories."""
        return self.category.value if self.category is not None else None


@dataclass
class Timings:
    """Milliseconds per phase, accumulated over a location's work.

    A phase still being measured counts up to now in ``as_dict``: the load phase's time is written
    inside the very transaction it measures."""

    extract_ms: int = 0
    transform_ms: int = 0
    load_ms: int = 0
    _open: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, phase: ErrorPhase) -> Iterator[None]:
        name = f"{phase.value}_ms"
        self._open[name] = time.perf_counter()
        try:
            yield
        finally:
            started = self._open.pop(name)
            setattr(self, name, getattr(self, name) + _ms_since(started))

    def as_dict(self) -> dict[str, int]:
        done = {"extract_ms": self.extract_ms, "transform_ms": self.transform_ms}
        done["load_ms"] = self.load_ms
        for name, started in self._open.items():
            done[name] += _ms_since(started)
        return done


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


@dataclass
class LocationResult:
    counters: ItemCounters = field(default_factory=ItemCounters)
    timings: Timings = field(default_factory=Timings)
    windows: list[dict[str, Any]] = field(default_factory=list)
    held_message: str | None = None  # a mass deletion held back (SPEC §4.9)
