"""The embedded scheduler (``FLUXION_SCHEDULER=embedded``, the default): a loop inside ``serve``.

Each tick:
  1. reload every schedule from the database (enable/disable and cron changes apply at once)
  2. per schedule, take the fire times due since its cursor (the last fire it handled; at start,
     the last fire recorded in the database, so downtime is caught up)
  3. plan them: decide each (disabled, inactive hours, too old) and apply the catch-up policy
  4. hand each to ``handle_fire`` (start through ``fire``, then record), advancing the cursor

Several processes may run this loop against one database: every process sees the same fire
times, the run's idempotency key is the fire and the ``fires`` row is inserted once, so each fire
starts exactly one run and the others answer ``duplicate``. A fire whose ``fire`` call fails is
retried every poll until it starts or grows older than the maximum event age (then ``missed``).

Between ticks the loop sleeps in the clock's time until the next fire time or the poll interval,
whichever is first. Idle, a tick reads one small table (so a change applies within one poll
interval) and compares each schedule with what it was at the last tick: the next fire time of an
unchanged schedule is remembered, not recomputed, and nothing is planned before it is due.
``start``/``stop`` run it in a thread (with a SystemClock or ScaledClock); with a ManualClock,
drive ``tick`` yourself (its ``sleep`` would advance the time for everyone).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine

from fluxion_etl.domain import cron
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.schedules import (
    FireSource,
    PlannedFire,
    ScheduleDef,
    due_fires,
    plan_fires,
)
from fluxion_etl.domain.states import FireOutcome
from fluxion_etl.scheduler.fires import FireCallback, handle_fire
from fluxion_etl.store.schedules import RecordedFire, last_fire, list_schedules

log = structlog.get_logger("fluxion.scheduler")

STARTUP_GRACE = timedelta(seconds=1)  # a first start fires a time due within the last second


class EmbeddedScheduler:
    """Fires every due schedule through ``fire`` and records every outcome (module docstring)."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        fire: FireCallback,
        *,
        poll_seconds: float = 1.0,
        source: FireSource = FireSource.EMBEDDED,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        self._engine, self._clock, self._fire = engine, clock, fire
        self._poll = timedelta(seconds=poll_seconds)
        self._source = source
        self._cursors: dict[str, datetime] = {}
        self._schedules: list[ScheduleDef] = []
        self._errors: dict[tuple[str, datetime], str] = {}
        # name -> (the definition, its first fire time after the last tick)
        self._upcoming: dict[str, tuple[ScheduleDef, datetime]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_tick_at: datetime | None = None

    # --- one pass ------------------------------------------------------------------------------

    def tick(self) -> list[RecordedFire]:
        """Fire everything due now; the answers, in order (``duplicate`` where another process
        was first)."""
        now = self._clock.now()
        self._schedules = self._load(now)
        answers: list[RecordedFire] = []
        for schedule in self._schedules:
            if self._nothing_due(schedule, now):
                continue  # its remembered next fire time is still the first one after now
            answers.extend(self._fire_due(schedule, now))
            upcoming = cron.next_fire(schedule.cron, schedule.timezone, now)
            self._upcoming[schedule.name] = (schedule, upcoming)
        self.last_tick_at = now
        return answers

    def _nothing_due(self, schedule: ScheduleDef, now: datetime) -> bool:
        """Unchanged since the last tick, no failed fire waiting, and its next fire time (after
        the last tick) still ahead: every earlier fire was handled then, so none is due now."""
        remembered = self._upcoming.get(schedule.name)
        if remembered is None or remembered[0] != schedule or now >= remembered[1]:
            return False
        return not any(name == schedule.name for name, _ in self._errors)

    def _load(self, now: datetime) -> list[ScheduleDef]:
        with self._engine.connect() as conn:
            stored = list_schedules(conn)
            for item in stored:
                if item.name not in self._cursors:
                    last = last_fire(conn, item.name)
                    self._cursors[item.name] = last.scheduled_for if last else now - STARTUP_GRACE
        return [item.definition for item in stored]

    def _fire_due(self, schedule: ScheduleDef, now: datetime) -> list[RecordedFire]:
        due = due_fires(schedule, self._cursors[schedule.name], now)
        answers = []
        for planned in plan_fires(schedule, due, now, self._source):
            try:
                answer = handle_fire(
                    self._engine,
                    schedule,
                    self._with_error(schedule, planned),
                    source=self._source,
                    clock=self._clock,
                    fire=self._fire,
                )
            except Exception as exc:  # any failure: retry this fire next poll
                self._remember_failure(schedule, planned, exc)
                break
            self._errors.pop((schedule.name, planned.scheduled_for), None)
            self._cursors[schedule.name] = planned.scheduled_for
            self._log(schedule, answer)
            answers.append(answer)
        return answers

    def _with_error(self, schedule: ScheduleDef, planned: PlannedFire) -> PlannedFire:
        """A fire recorded ``missed`` after failed attempts says why it could not start."""
        error = self._errors.get((schedule.name, planned.scheduled_for))
        if error is None or planned.outcome is not FireOutcome.MISSED:
            return planned
        return replace(planned, detail=f"{planned.detail}; could not start: {error}")

    def _remember_failure(
        self, schedule: ScheduleDef, planned: PlannedFire, exc: Exception
    ) -> None:
        key = (schedule.name, planned.scheduled_for)
        if key not in self._errors:
            log.warning(
                "fire could not start; retrying until its maximum event age",
                schedule=schedule.name,
                scheduled_for=planned.scheduled_for.isoformat(),
                error=f"{type(exc).__name__}: {exc}",
            )
        self._errors[key] = f"{type(exc).__name__}: {exc}"[:500]

    @staticmethod
    def _log(schedule: ScheduleDef, answer: RecordedFire) -> None:
        log.info(
            "fire",
            schedule=schedule.name,
            scheduled_for=answer.first.scheduled_for.isoformat(),
            outcome=answer.outcome.value,
            run_id=answer.run_id,
        )

    # --- the loop ------------------------------------------------------------------------------

    def next_wake(self, now: datetime) -> datetime:
        """The first fire time after the last tick, or ``now`` + the poll interval if sooner.

        A fire whose start failed is in the past: it is retried at the poll interval.
        """
        after = self.last_tick_at or now
        wake = now + self._poll
        for schedule in self._schedules:
            upcoming = self._upcoming_after(schedule, after)
            wake = min(wake, max(upcoming, now))
        return wake

    def _upcoming_after(self, schedule: ScheduleDef, after: datetime) -> datetime:
        remembered = self._upcoming.get(schedule.name)
        if remembered is not None and remembered[0] == schedule and after == self.last_tick_at:
            return remembered[1]
        return cron.next_fire(schedule.cron, schedule.timezone, after)

    def run(self) -> None:
        """Tick until ``stop``; an error (e.g. the database is down) is logged and retried."""
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop outlives a failed tick
                log.exception("scheduler tick failed; retrying")
            now = self._clock.now()
            self._clock.sleep(max(0.0, (self.next_wake(now) - now).total_seconds()))

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="fluxion-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop after the current sleep (at most one poll interval of the clock's time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
