"""One KLK call on behalf of a location: timed, and any KLK error turned into a LocationFailure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fluxion_etl.domain.states import ErrorCategory, ErrorPhase
from fluxion_etl.engine.location import LocationContext
from fluxion_etl.engine.outcome import LocationFailure, LocationResult
from fluxion_etl.errors import KlkError
from fluxion_etl.klk.client import Fetched

T = TypeVar("T")


_DECODE_CATEGORIES = {ErrorCategory.BAD_PAYLOAD}


def fetch(
    ctx: LocationContext, call: str, do: Callable[[], Fetched[T]], result: LocationResult
) -> T:
    """Run ``do`` (a KlkClient call); extract and decode time go to their phases."""
    started = time.perf_counter()
    try:
        fetched = do()
    except KlkError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        result.timings.extract_ms += elapsed
        phase = ErrorPhase.TRANSFORM if exc.category in _DECODE_CATEGORIES else ErrorPhase.EXTRACT
        raise LocationFailure(
            exc.category, phase, str(exc), raw=exc.raw, call=call, timings=result.timings.as_dict()
        ) from exc
    result.timings.extract_ms += int(fetched.extract_seconds * 1000)
    result.timings.transform_ms += int(fetched.decode_seconds * 1000)
    return fetched.value


def is_mass_deletion(count: int, total: int, threshold: float) -> bool:
    """SPEC §4.9: deleting more than ``threshold`` of what is stored is held back."""
    return total > 0 and count / total > threshold
