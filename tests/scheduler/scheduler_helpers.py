"""Helpers the scheduler tests share (imported by name; conftest.py holds the fixtures)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.scheduler.embedded import EmbeddedScheduler
from fluxion_etl.store.schedules import RecordedFire
from fluxion_etl.store.schema import runs

CARACAS = ZoneInfo("America/Caracas")


def caracas(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A Caracas local time in January 2026 (the 5th is a Monday)."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=CARACAS)


def drive(
    schedulers: list[EmbeddedScheduler], clock: ManualClock, until: datetime
) -> list[RecordedFire]:
    """Tick every scheduler now, then at each next wake-up up to ``until``; several schedulers
    tick at the same instant in parallel threads, as separate processes would."""
    answers: list[RecordedFire] = []
    while True:
        answers.extend(_tick_together(schedulers))
        wake = min(s.next_wake(clock.now()) for s in schedulers)
        if wake > until:
            clock.set(until)
            return answers
        clock.set(wake)


def _tick_together(schedulers: list[EmbeddedScheduler]) -> list[RecordedFire]:
    if len(schedulers) == 1:
        return schedulers[0].tick()
    results: list[list[RecordedFire]] = [[] for _ in schedulers]
    barrier = threading.Barrier(len(schedulers))

    def tick(index: int) -> None:
        barrier.wait()
        results[index] = schedulers[index].tick()

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(schedulers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer for result in results for answer in result]


def runs_per_fire(engine: Engine) -> Counter[tuple[str, datetime]]:
    """How many runs each (schedule, scheduled time) started."""
    query = select(runs.c.schedule_name, runs.c.scheduled_for, func.count()).group_by(
        runs.c.schedule_name, runs.c.scheduled_for
    )
    with engine.connect() as conn:
        return Counter({(name, when): count for name, when, count in conn.execute(query)})
