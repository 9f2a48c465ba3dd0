"""The context a pipeline works in for one location of one run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from fluxion_etl.domain.records import Location
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase, ItemStatus, Job
from fluxion_etl.engine.crashpoints import crash_point
from fluxion_etl.engine.outcome import LocationFailure, LocationResult
from fluxion_etl.engine.runlog import RunLog
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.store import leases, ledger, sync_state


@dataclass
class LocationContext:
    rt: Runtime
    run_id: int
    job: Job
    location: Location
    log: RunLog
    deadline_at: datetime
    params: dict[str, object]
    # ``commit_success`` released the lease in the load's transaction (it holds once that commits).
    released_with_load: bool = False

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.rt.settings.lease_ttl_seconds)

    def check_deadline(self) -> None:
        if self.rt.clock.now() >= self.deadline_at:
            raise LocationFailure(
                ErrorCategory.DEADLINE,
                ErrorPhase.EXTRACT,
                f"the run's deadline {self.deadline_at.isoformat()} passed mid-location",
            )

    def acquire(self) -> bool:
        """Take the (job, location) lease; False when another live run holds it."""
        with self.rt.engine.begin() as conn:
            return self.acquire_in(conn)

    def acquire_in(self, conn: Connection) -> bool:
        """``acquire`` inside the caller's transaction (the lease is taken when it commits)."""
        return leases.try_acquire(
            conn,
            job=self.job.value,
            location_id=self.location.id,
            run_id=self.run_id,
            owner=self.rt.owner,
            now=self.rt.clock.now(),
            ttl=self.lease_ttl,
        ).acquired

    def release(self) -> None:
        with self.rt.engine.begin() as conn:
            leases.release(
                conn, job=self.job.value, location_id=self.location.id, run_id=self.run_id
            )

    def progress(self, stage: str, detail: str = "") -> None:
        if self.rt.on_progress is not None:
            self.rt.on_progress(self.location.id, stage, detail)

    def commit_success(
        self,
        conn: Connection,
        result: LocationResult,
        *,
        watermark: datetime | None = None,
        fresh: bool = True,
    ) -> None:
        """In the load transaction: the item's counters and sync state commit with the rows, and
        the lease is freed with them (one transaction a location fewer). ``fresh``: the load
        read the location's data up to now (not only past days), so it counts for freshness."""
        now = self.rt.clock.now()
        ledger.finish_item(
            conn,
            self.run_id,
            self.location.id,
            ItemStatus.SUCCEEDED,
            now=now,
            counters=result.counters,
            timings=result.timings.as_dict(),
            windows=result.windows,
            error_category=ErrorCategory.MASS_DELETION_HELD.value if result.held_message else None,
            error_phase=ErrorPhase.LOAD.value if result.held_message else None,
            error_message=result.held_message,
        )
        sync_state.record_success(
            conn,
            job=self.job.value,
            location_id=self.location.id,
            run_id=self.run_id,
            now=now,
            watermark=watermark,
            fresh=fresh,
        )
        leases.release(conn, job=self.job.value, location_id=self.location.id, run_id=self.run_id)
        self.released_with_load = True
        crash_point("loading", self.location.id)
