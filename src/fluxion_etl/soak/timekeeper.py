"""The soak's simulated time: published in a file every process reads (``FileClock``), and slowed
down while the service lags behind it.

A fixed-speed clock turns a slow machine into a different test: work arrives at a fixed real
rate whatever the machine can do, worker processes pile up, and every simulated-time limit
(leases, deadlines, maximum event age, fault windows) shrinks in real terms until the soak
measures the machine's load instead of the product. So time runs at the mode's speed only while
the service keeps up: few runs in flight (queued, or running with a recent heartbeat) and none
queued for long (a worker process slow to start). Otherwise time slows to a crawl (it never
stops: the leases of dead processes must still expire) until the backlog clears.

Time stands still until ``release()`` and again after ``hold()``: the processes start and stop
on a stopped clock, so a slow start costs no simulated time and no fire falls due while they
stop. The timekeeper is a Clock for the soak itself: ``now`` and ``sleep`` in published time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fluxion_etl.domain.clock import FileClock

TICK = 0.02  # real seconds between publications
SAMPLE = 0.2  # real seconds between looks at the backlog
# Runs in flight -> share of full speed. Two (an inventory and a sales run) is the normal load.
PACE = ((2, 1.0), (3, 0.5), (4, 0.25))
CRAWL = 0.1
WAIT_SLOW, WAIT_CRAWL = timedelta(minutes=20), timedelta(minutes=40)  # queued that long: a lag


@dataclass(frozen=True, slots=True)
class Backlog:
    in_flight: int
    longest_wait: timedelta  # of the runs still queued


def pace_for(backlog: Backlog | None) -> float:
    """The share of full speed for this backlog (None: unknown, e.g. the database restarts)."""
    if backlog is None:
        return 0.25
    if backlog.longest_wait > WAIT_CRAWL:
        return CRAWL
    share = next((s for limit, s in PACE if backlog.in_flight <= limit), CRAWL)
    return min(share, 0.3) if backlog.longest_wait > WAIT_SLOW else share


class Timekeeper:
    def __init__(
        self, path: Path, start: datetime, speed: float, lag: Callable[[], Backlog]
    ) -> None:
        self.path, self.speed = path, speed
        self.start = start.astimezone(UTC)
        self._lag = lag
        self._now = self.start.timestamp()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timekeeper", daemon=True)
        self.slowed_seconds = 0.0  # real seconds spent below full speed
        self._publish(self._now)

    def spec(self) -> str:
        return FileClock(str(self.path), self.speed).spec()

    def now(self) -> datetime:
        with self._lock:
            return datetime.fromtimestamp(self._now, UTC)

    def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` of published time have passed."""
        until = self.now() + timedelta(seconds=max(0.0, seconds))
        while self.now() < until and not self._stop.is_set():
            time.sleep(TICK)

    def start_running(self) -> None:
        self._thread.start()

    def release(self) -> None:
        """Let time run (it stands still from construction until this call)."""
        self._released.set()

    def hold(self) -> None:
        """Stop time again (the soak stops the services on a stopped clock: no fire falls due
        while they shut down)."""
        self._released.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        share, last, sampled = 1.0, time.monotonic(), 0.0
        while not self._stop.wait(TICK):
            real = time.monotonic()
            if not self._released.is_set():
                share = 0.0
            elif real - sampled >= SAMPLE:
                share, sampled = pace_for(self._safe_lag()), real
            if 0.0 < share < 1.0:
                self.slowed_seconds += real - last
            with self._lock:
                self._now += (real - last) * self.speed * share
                value = self._now
            self._publish(value)
            last = real

    def _safe_lag(self) -> Backlog | None:
        try:
            return self._lag()
        except Exception:  # the database may be restarting: slow down, do not stop
            return None

    def _publish(self, value: float) -> None:
        staging = self.path.with_suffix(".new")
        staging.write_text(repr(value), encoding="ascii")
        os.replace(staging, self.path)
