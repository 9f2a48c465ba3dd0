"""KLK's response envelopes, assembled from pre-rendered rows, and the payload faults on them.

Rows stay bytes end to end: a catalogue of 15,000 articles is one join, not 15,000 encodings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fluxion_etl.sim.faults import Fault, FaultKind


def generated_at(now: datetime) -> str:
    """``fecha_generacion``: UTC with milliseconds and ``Z``, as KLK writes it."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _array(rows: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(rows) + b"]"


def catalogue_body(
    codes: Sequence[str], rows: Sequence[bytes], now: datetime, declared: int
) -> bytes:
    return catalogue_envelope(codes, _array(rows), now, declared)


def catalogue_envelope(codes: Sequence[str], array: bytes, now: datetime, declared: int) -> bytes:
    """The catalogue body around ``array``, the ``articulos`` already rendered as one array."""
    meta = {
        "almacences_filtrados": orjson.dumps(list(codes)).decode(),
        "total_articulos": declared,
        "fecha_generacion": generated_at(now),
    }
    return b'{"meta":' + orjson.dumps(meta) + b',"articulos":' + array + b"}"


def sales_body(echo: dict[str, Any], rows: Sequence[bytes], now: datetime, declared: int) -> bytes:
    meta = echo | {"total_registros": declared, "fecha_generacion": generated_at(now)}
    return b'{"meta":' + orjson.dumps(meta) + b',"ventas":' + _array(rows) + b"}"


def list_body(rows: Sequence[dict[str, str]]) -> bytes:
    return orjson.dumps(list(rows))


@dataclass(frozen=True, slots=True)
class Shaped:
    """Rows after payload faults, the count the meta will declare, and a cut for the bytes."""

    rows: list[Any]
    declared: int
    truncate_at: float | None


def shape(rows: list[Any], faults: Sequence[Fault], rng: random.Random) -> Shaped:
    """Apply ``empty_sales``, ``duplicate_lines``, ``count_mismatch``; note ``truncated_json``."""
    delta, cut = 0, None
    for fault in faults:
        if fault.kind is FaultKind.EMPTY_SALES:
            rows = []
        elif fault.kind is FaultKind.DUPLICATE_LINES and rows:
            rows = _with_duplicates(rows, how_many(fault.amount, len(rows)), rng)
        elif fault.kind is FaultKind.COUNT_MISMATCH:
            delta += int(fault.amount) or 1
        elif fault.kind is FaultKind.TRUNCATED_JSON:
            cut = min(max(fault.amount, 0.0), 0.99)
    declared = len(rows) + delta
    return Shaped(rows, declared if declared >= 0 else len(rows) - delta, cut)


def how_many(amount: float, total: int) -> int:
    """``N`` rows, or a fraction of ``total`` when ``amount`` is below 1 (at least one)."""
    wanted = round(amount * total) if amount < 1 else int(amount)
    return min(total, max(1, wanted))


def _with_duplicates(rows: list[Any], count: int, rng: random.Random) -> list[Any]:
    """Repeat ``count`` rows, each right after itself, as KLK's joins produce them."""
    chosen = set(rng.sample(range(len(rows)), count))
    out = []
    for i, row in enumerate(rows):
        out.append(row)
        if i in chosen:
            out.append(row)
    return out


def truncate(body: bytes, cut: float | None) -> bytes:
    return body if cut is None else body[: max(1, int(len(body) * cut))]
