"""Faults the simulator injects, how they are written, and the log proving they were injected.

Compact syntax (CLI ``--faults``, ``POST /_sim/faults``), faults separated by ``;``::

    CALL@LOCATION:KIND[=VALUE][:p=PROB][:n=COUNT][:from=ISO][:until=ISO][:msg=TEXT]

    sales@tienda_03:http_503                 every sales call of tienda_03 answers 503
    *@*:latency=0.2:p=0.1                     10 % of all calls wait 0.2 s first
    catalogue@tienda_01:hang:n=1              the first catalogue call of tienda_01 hangs
    sales@*:void_lines=3:from=2025-11-17T12:00:00
    sales@tienda_02:error_body:msg=KLK caido

CALL is ``catalogue``, ``sales``, ``warehouses`` or ``*``; LOCATION a location id, a KLK branch or
warehouse code, or ``*``. ``from``/``until`` bound the simulated time, [from, until); a time
without offset is America/Caracas. ``p`` draws from a seeded RNG; ``n`` caps the number of
injections (with no ``p``: the first N matching calls).

KIND and VALUE (default):
    latency=S           wait S real seconds (1), then answer normally; adds up with others
    hang=S              wait S real seconds (3600) unless the client leaves or the server stops
    http_500, http_503  answer that status with a short text body
    error_body          HTTP 200 ``{"error": msg}``
    truncated_json=F    cut the body after fraction F (0.5) of its bytes
    count_mismatch=D    the meta count is the real count + D (1)
    duplicate_lines=N   repeat N rows (1); a value below 1 is a fraction of the rows
    void_lines=N        void N of the returned sales lines (1; below 1: a fraction): this
                        answer still has them, later answers and the truth do not
    empty_sales         an empty list, as a store whose server is offline answers

Per call, delays come first; then the first due of http_500 / http_503 / error_body answers
instead of the payload (payload faults are then skipped, and not logged); otherwise payload
faults apply in order. Kinds that make no sense for a call (``void_lines`` on a catalogue,
``count_mismatch`` on a warehouse list, which has no meta) never match it.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter, deque
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

CARACAS = ZoneInfo("America/Caracas")


class FaultKind(StrEnum):
    LATENCY = "latency"
    HANG = "hang"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    ERROR_BODY = "error_body"
    TRUNCATED_JSON = "truncated_json"
    COUNT_MISMATCH = "count_mismatch"
    DUPLICATE_LINES = "duplicate_lines"
    VOID_LINES = "void_lines"
    EMPTY_SALES = "empty_sales"


class Call(StrEnum):
    CATALOGUE = "catalogue"
    SALES = "sales"
    WAREHOUSES = "warehouses"


DELAYS = frozenset({FaultKind.LATENCY, FaultKind.HANG})
REPLACEMENTS = frozenset({FaultKind.HTTP_500, FaultKind.HTTP_503, FaultKind.ERROR_BODY})
NOT_FOR = {
    Call.CATALOGUE: frozenset({FaultKind.VOID_LINES}),
    Call.WAREHOUSES: frozenset({FaultKind.VOID_LINES, FaultKind.COUNT_MISMATCH}),
    Call.SALES: frozenset(),
}
DEFAULT_VALUE = {
    FaultKind.LATENCY: 1.0,
    FaultKind.HANG: 3600.0,
    FaultKind.TRUNCATED_JSON: 0.5,
    FaultKind.COUNT_MISMATCH: 1.0,
    FaultKind.DUPLICATE_LINES: 1.0,
    FaultKind.VOID_LINES: 1.0,
}
DEFAULT_ERROR = "No se pudo conectar con la base de datos de la sucursal"
_OPTION_SPLIT = re.compile(r":(?=(?:p|n|from|until|msg)=)")


class FaultSyntaxError(ValueError):
    """A fault spec that cannot be parsed; the message quotes it and shows the syntax."""

    def __init__(self, spec: str, why: str) -> None:
        super().__init__(
            f"bad fault {spec!r}: {why} (syntax: CALL@LOCATION:KIND[=VALUE][:p=P][:n=N]"
            "[:from=ISO][:until=ISO][:msg=TEXT])"
        )


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    call: str = "*"
    location: str = "*"
    value: float | None = None
    probability: float | None = None
    count: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    message: str | None = None

    @property
    def amount(self) -> float:
        """``value`` or the kind's default."""
        return self.value if self.value is not None else DEFAULT_VALUE.get(self.kind, 0.0)

    def targets(self, call: Call, names: Collection[str], now: datetime) -> bool:
        """Whether this fault applies to a ``call`` about ``names`` at simulated ``now``."""
        return (
            self.call in ("*", call.value)
            and self.kind not in NOT_FOR[call]
            and (self.location == "*" or self.location in names)
            and (self.since is None or now >= self.since)
            and (self.until is None or now < self.until)
        )

    def spec(self) -> str:
        text = f"{self.call}@{self.location}:{self.kind.value}"
        text += "" if self.value is None else f"={self.value:g}"
        for key, item in (("p", self.probability), ("n", self.count)):
            text += "" if item is None else f":{key}={item:g}"
        for key, when in (("from", self.since), ("until", self.until)):
            text += "" if when is None else f":{key}={when.isoformat()}"
        return text + ("" if self.message is None else f":msg={self.message}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["since"] = self.since.isoformat() if self.since else None
        data["until"] = self.until.isoformat() if self.until else None
        data["spec"] = self.spec()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """The inverse of ``to_json`` (``spec`` ignored); raises FaultSyntaxError."""
        try:
            fields = {k: v for k, v in data.items() if k != "spec"}
            fields["kind"] = FaultKind(fields["kind"])
            for key in ("since", "until"):
                fields[key] = _when(fields[key]) if fields.get(key) else None
            fault = cls(**fields)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise FaultSyntaxError(str(data), str(exc)) from None
        return _checked(fault, str(data))


def parse_faults(text: str) -> tuple[Fault, ...]:
    """Parse the compact syntax (see the module docstring); empty text = no faults."""
    return tuple(parse_fault(part.strip()) for part in text.split(";") if part.strip())


def parse_fault(spec: str) -> Fault:
    target, sep, rest = spec.partition(":")
    call, at, location = target.partition("@")
    if not sep or not at or not call or not location:
        raise FaultSyntaxError(spec, "expected CALL@LOCATION:KIND")
    if call != "*" and call not in Call.__members__.values():
        raise FaultSyntaxError(
            spec, f"unknown call {call!r}: use catalogue, sales, warehouses or *"
        )
    head, *options = _OPTION_SPLIT.split(rest)
    kind_text, has_value, value_text = head.partition("=")
    try:
        kind = FaultKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise FaultSyntaxError(spec, f"unknown kind {kind_text!r}: use one of {known}") from None
    fields: dict[str, Any] = {"kind": kind, "call": call, "location": location}
    try:
        fields["value"] = float(value_text) if has_value else None
        fields.update(_option(option) for option in options)
    except ValueError as exc:
        raise FaultSyntaxError(spec, str(exc)) from None
    return _checked(Fault(**fields), spec)


def _option(option: str) -> tuple[str, Any]:
    key, _, value = option.partition("=")
    if key == "p":
        return "probability", float(value)
    if key == "n":
        return "count", int(value)
    if key in ("from", "until"):
        return ("since" if key == "from" else "until"), _when(value)
    return "message", value


def _when(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=CARACAS) if when.tzinfo is None else when


def _checked(fault: Fault, spec: str) -> Fault:
    if fault.probability is not None and not 0 <= fault.probability <= 1:
        raise FaultSyntaxError(spec, "p must be between 0 and 1")
    if fault.count is not None and fault.count < 0:
        raise FaultSyntaxError(spec, "n must be >= 0")
    if fault.value is not None and fault.value < 0 and fault.kind is not FaultKind.COUNT_MISMATCH:
        raise FaultSyntaxError(spec, "the value must be >= 0")
    return fault


@dataclass(frozen=True, slots=True)
class Injection:
    """One fault applied to one call, for the log."""

    seq: int
    at: datetime
    kind: FaultKind
    call: Call
    target: str
    spec: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "call": self.call.value,
            "target": self.target,
            "spec": self.spec,
        }


@dataclass(frozen=True, slots=True)
class Selection:
    """The faults to apply to one call, already resolved (see the module docstring)."""

    delays: tuple[Fault, ...] = ()
    replacement: Fault | None = None
    payload: tuple[Fault, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.delays or self.replacement or self.payload)


@dataclass
class _Active:
    fault: Fault
    fired: int = 0


class FaultPlan:
    """The faults in force, their injection counters, and the log; safe to share across threads.

    ``faults`` is a list of Fault or the compact syntax; ``seed`` drives the ``p=`` draws.
    """

    def __init__(
        self, faults: Iterable[Fault] | str = (), *, seed: int = 1, log_size: int = 1000
    ) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(f"{seed}:faults")
        self._log: deque[Injection] = deque(maxlen=log_size)
        self._counts: Counter[str] = Counter()
        self._seq = 0
        self._active: list[_Active] = []
        self.replace(parse_faults(faults) if isinstance(faults, str) else faults)

    @property
    def faults(self) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(a.fault for a in self._active)

    def replace(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._active = [_Active(f) for f in faults]

    def add(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._active += [_Active(f) for f in faults]

    def clear(self) -> None:
        self.replace(())

    def select(self, call: Call, names: Collection[str], now: datetime, target: str) -> Selection:
        """Decide (and log) the faults for one call about ``names`` (ids and KLK codes)."""
        with self._lock:
            due = [a for a in self._active if self._due(a, call, names, now)]
            replacement = next((a for a in due if a.fault.kind in REPLACEMENTS), None)
            kept = [
                a
                for a in due
                if a.fault.kind in DELAYS
                or a is replacement
                or (replacement is None and a.fault.kind not in REPLACEMENTS)
            ]
            for active in kept:
                active.fired += 1
                self._record(active.fault, call, target, now)
        return Selection(
            delays=tuple(a.fault for a in kept if a.fault.kind in DELAYS),
            replacement=replacement.fault if replacement else None,
            payload=tuple(a.fault for a in kept if a.fault.kind not in DELAYS | REPLACEMENTS),
        )

    def _due(self, active: _Active, call: Call, names: Collection[str], now: datetime) -> bool:
        fault = active.fault
        if not fault.targets(call, names, now):
            return False
        if fault.count is not None and active.fired >= fault.count:
            return False
        return fault.probability is None or self._rng.random() < fault.probability

    def _record(self, fault: Fault, call: Call, target: str, now: datetime) -> None:
        self._seq += 1
        self._log.append(Injection(self._seq, now, fault.kind, call, target, fault.spec()))
        self._counts[fault.kind.value] += 1

    def counts(self) -> dict[str, int]:
        """Injections so far by kind (never reset by ``replace``/``clear``)."""
        with self._lock:
            return dict(self._counts)

    def log(self, limit: int | None = None) -> list[Injection]:
        with self._lock:
            entries = list(self._log)
        return entries if limit is None else entries[-limit:]

    def to_json(self, *, log_limit: int = 200) -> dict[str, Any]:
        return {
            "faults": [f.to_json() for f in self.faults],
            "counts": self.counts(),
            "log": [i.to_json() for i in self.log(log_limit)],
        }
