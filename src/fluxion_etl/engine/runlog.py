"""Per-run logging: every line carries run id, job and location, goes to structlog (stdout) at once
and is kept in the database (bounded per run) so it can be read after the process is gone.

Lines reach the database in batches, one transaction each: a warning or an error at once (with
what waits before it), the rest when a second has passed since the last write, and whatever is
left when the runner calls ``flush`` (each heartbeat, and the run's end). A 200-location cycle
logs a few lines per location; a transaction per line cost more than some locations' loads.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.domain.clock import Clock
from fluxion_etl.store import runlogs
from fluxion_etl.store.runlogs import LogLine

FLUSH_SECONDS = 1.0
_AT_ONCE = frozenset({"warning", "error"})


class RunLog:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        run_id: int,
        job: str,
        max_lines: int,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._engine, self._clock, self._max = engine, clock, max_lines
        self.run_id, self.job = run_id, job
        self._log = structlog.get_logger("fluxion.run").bind(run_id=run_id, job=job)
        self._flush_seconds = flush_seconds
        self._pending: list[LogLine] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # batches are written one after another, in order
        self._written_at = time.monotonic()

    def _emit(
        self, level: str, event: str, location_id: str | None, fields: dict[str, Any]
    ) -> None:
        getattr(self._log, level)(event, location_id=location_id, **fields)
        line = LogLine(
            at=self._clock.now(),
            level=level,
            event=event,
            location_id=location_id,
            fields=fields or None,
        )
        with self._pending_lock:
            self._pending.append(line)
        if level in _AT_ONCE or time.monotonic() - self._written_at >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the lines not written yet, in one transaction (best effort: stdout has them)."""
        with self._write_lock:
            with self._pending_lock:
                lines, self._pending = self._pending, []
            self._written_at = time.monotonic()
            if not lines:
                return
            try:
                with self._engine.begin() as conn:
                    runlogs.append_logs(conn, self.run_id, lines, max_lines=self._max)
            except SQLAlchemyError as exc:
                self._log.warning("run log not persisted", lines=len(lines), error=str(exc)[:200])

    def info(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("info", event, location_id, fields)

    def warning(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("warning", event, location_id, fields)

    def error(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("error", event, location_id, fields)
