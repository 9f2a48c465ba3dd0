"""Calls to the service's HTTP API, as the field's callers and the scheduler make them (SPEC §6).

Bursts send the same request many times at once, split over both service processes, and keep
every answer, so the checks can hold the service to its promise: one run per idempotency key and
per scheduler fire, however many deliveries race.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

REQUEST_TIMEOUT = 60.0  # real seconds: a loaded machine answers slowly, never wrongly


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int  # 0: no HTTP answer (connection refused or cut: a killed process)
    run_id: int | None
    status: str | None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Burst:
    """One burst of identical deliveries; ``key`` is the idempotency key or the fire's key."""

    kind: str
    key: str | None
    path: str
    answers: tuple[Answer, ...]
    fire: tuple[str, datetime] | None = None  # (schedule, scheduled time) of a fire burst


@dataclass
class Api:
    """The service's trigger API over one or more process URLs, with a bearer token."""

    urls: Sequence[str]
    token: str
    bursts: list[Burst] = field(default_factory=list)
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(
            timeout=REQUEST_TIMEOUT, headers={"Authorization": f"Bearer {self.token}"}
        )

    def close(self) -> None:
        self._client.close()

    def call(
        self, serve: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST; the status (0: no HTTP answer, e.g. a killed process) and the JSON object."""
        try:
            response = self._client.post(
                self.urls[serve % len(self.urls)] + path, json=body, headers=headers or {}
            )
        except httpx.HTTPError:
            return 0, {}
        try:
            data = response.json()
        except ValueError:
            data = {}
        return response.status_code, data if isinstance(data, dict) else {}

    def post(
        self, serve: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Answer:
        code, data = self.call(serve, path, body, headers)
        run_id = data.get("run_id")
        return Answer(code, int(run_id) if run_id is not None else None, data.get("status"))

    def burst(
        self,
        kind: str,
        path: str,
        body: dict[str, Any],
        *,
        copies: int,
        first_serve: int,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        fire: tuple[str, datetime] | None = None,
    ) -> Burst:
        """``copies`` identical calls at once, alternating between the service processes."""
        serves = itertools.islice(itertools.count(first_serve), copies)
        with ThreadPoolExecutor(max_workers=copies) as pool:
            answers = list(pool.map(lambda s: self.post(s, path, body, headers), serves))
        burst = Burst(kind, key, path, tuple(answers), fire)
        self.bursts.append(burst)
        return burst


def fire_headers(schedule: str, scheduled_for: datetime) -> dict[str, str]:
    """What EventBridge (through the trigger Lambda) sends with a scheduled fire."""
    return {
        "X-Fluxion-Schedule": schedule,
        "X-Fluxion-Scheduled-Time": scheduled_for.astimezone(UTC).isoformat(),
    }
