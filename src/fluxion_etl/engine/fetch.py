"""One KLK call on behalf of a location: timed, and any KLK error turned into a LocationFailure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from fluxion_etl.domain.states import ErrorCategory, ErrorPhase
from fluxion_etl.engine.location import LocationContext
from fluxion_etl.engine.outcome import LocationFailure, LocationResult
from fluxion_etl.errors import KlkError

T = TypeVar("T")


class _Fetched(Protocol[T]):  # type: ignore[misc]
    value: T
    seconds: float
    decode_seconds: float


_DECODE_CATEGORIES = {ErrorCategory.BAD_PAYLOAD}


def fetch(ctx: LocationContext, call: str, do: Callable[[], _Fetched[T]], result: LocationResult) -> T:
    """Run ``do`` (a KlkClient call); extract and decode time go to their phases."""
    started = time.perf_counter()
    try:
        fetched = do()
    except KlkError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        result.timings.extract_ms += elapsed
        phase = ErrorPhase.TRANSFORM if exc.category in _DECODE_CATEGORIES else ErrorPhase.EXTRACT
        raise LocationFailure(exc.category, phase, str(exc), raw=exc.raw, call=call) from exc
    decode_ms = int(fetched.decode_seconds * 1000)
    result.timings.extract_ms += int(fetched.seconds * 1000) - decode_ms
    result.timings.transform_ms += decode_ms
    return fetched.value


def is_mass_deletion(count: int, total: int, threshold: float) -> bool:
    """SPEC §4.9: deleting more than ``threshold`` of what is stored is held back."""
    return total > 0 and count / total > threshold
