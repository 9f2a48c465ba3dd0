"""Per-run logging: every line carries run id, job and location, goes to structlog (stdout) and is
kept in the database (bounded per run) so it can be read after the process is gone."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.domain.clock import Clock
from fluxion_etl.store import ledger


class RunLog:
    def __init__(
        self, engine: Engine, clock: Clock, *, run_id: int, job: str, max_lines: int
    ) -> None:
        self._engine, self._clock, self._max = engine, clock, max_lines
        self.run_id, self.job = run_id, job
        self._log = structlog.get_logger("fluxion.run").bind(run_id=run_id, job=job)

    def _emit(
        self, level: str, event: str, location_id: str | None, fields: dict[str, Any]
    ) -> None:
        getattr(self._log, level)(event, location_id=location_id, **fields)
        try:
            with self._engine.begin() as conn:
                ledger.append_log(
                    conn,
                    self.run_id,
                    now=self._clock.now(),
                    level=level,
                    event=event,
                    location_id=location_id,
                    fields=fields or None,
                    max_lines=self._max,
                )
        except SQLAlchemyError as exc:  # the ledger line is best effort; stdout still has it
            self._log.warning("run log not persisted", error=str(exc)[:200])

    def info(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("info", event, location_id, fields)

    def warning(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("warning", event, location_id, fields)

    def error(self, event: str, location_id: str | None = None, **fields: Any) -> None:
        self._emit("error", event, location_id, fields)
