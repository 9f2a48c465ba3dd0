"""The overview: are my numbers fresh, and if not, why and what do I do?

One row per location, one cell per job, coloured (and labelled) by the freshness rule of SPEC
§4.12: ``fresh`` (open, recent enough), ``closed`` (closed now, the day's data complete),
``stale`` (too old, or never synced) and ``unknown`` (not judged: not open in the past week).
A cell also says how old the data is, whether a run is syncing it now, the last error when the
last attempt failed (category and message), an open circuit, and offers a one-click sync.
Above it: runs going on, runs that failed and fires missed today, open gaps, and schedules that
are switched off (their data will go stale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from fluxion_etl.api.context import ServiceContext
from fluxion_etl.domain.records import Location
from fluxion_etl.domain.schedules import ScheduleDef, upcoming_fires
from fluxion_etl.domain.states import FireOutcome, Job, RunStatus
from fluxion_etl.domain.windows import local_midnight
from fluxion_etl.engine import freshness
from fluxion_etl.engine.freshness import Freshness
from fluxion_etl.store import leases, schedules, sync_state
from fluxion_etl.store.sync_state import SyncStateRow
from fluxion_etl.web import queries
from fluxion_etl.web.deps import Viewer
from fluxion_etl.web.gapview import open_gaps
from fluxion_etl.web.render import chain_zone, render, services_of

router = APIRouter(include_in_schema=False)

JOBS = (Job.INVENTORY, Job.SALES)
FAILED = (RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.TIMED_OUT, RunStatus.ABANDONED)


@dataclass(frozen=True, slots=True)
class Cell:
    location: Location
    job: Job
    state: str  # fresh | closed | stale | unknown
    verdict: Freshness
    sync: SyncStateRow | None
    running_run: int | None  # the run holding this location now

    @property
    def failing(self) -> bool:
        """The last attempt failed: failures counted since the last success (a load of past days
        only is a success too, though not a fresh one)."""
        sync = self.sync
        if sync is None or sync.last_error_category is None:
            return False
        return sync.consecutive_failures > 0

    def circuit_open_until(self, now: datetime) -> datetime | None:
        return self.sync.circuit_open_until if self.sync and self.sync.circuit_open(now) else None

    @property
    def needs_action(self) -> bool:
        return self.state == "stale" or self.failing


@dataclass(frozen=True, slots=True)
class Row:
    location: Location
    cells: Mapping[Job, Cell]


@dataclass(frozen=True, slots=True)
class Summary:
    running: int
    failed_today: int
    missed_today: int
    open_gaps: int
    stale: int
    judged: int


def cell_state(verdict: Freshness) -> str:
    if verdict.required_since is None and verdict.last_success_at is not None:
        return "unknown"
    if verdict.stale:
        return "stale"
    return "fresh" if verdict.open_now else "closed"


def build_rows(services: ServiceContext, conn: Connection, now: datetime) -> list[Row]:
    states = {(s.job, s.location_id): s for s in sync_state.all_states(conn)}
    held = {
        (lease.job, lease.location_id): lease.run_id
        for lease in leases.list_leases(conn)
        if lease.expires_at > now
    }
    verdicts = freshness.judge_all(
        services.config.locations,
        {(job.value, loc): s.last_success_at for (job, loc), s in states.items()},
        now=now,
        deadlines=freshness.deadlines_from(services.settings.deadline_seconds),
        periods=services.schedule_periods() if services.schedule_periods else None,
    )
    cells: dict[str, dict[Job, Cell]] = {}
    for verdict in verdicts:
        key = (verdict.job, verdict.location_id)
        location = services.config.location(verdict.location_id)
        cells.setdefault(location.id, {})[verdict.job] = Cell(
            location, verdict.job, cell_state(verdict), verdict, states.get(key), held.get(key)
        )
    return [Row(loc, cells.get(loc.id, {})) for loc in services.config.locations if loc.active]


def summarize(
    services: ServiceContext, conn: Connection, rows: list[Row], now: datetime
) -> Summary:
    zone = chain_zone(services.config)
    midnight = local_midnight(now.astimezone(zone).date(), zone)
    counts = queries.run_counts_since(conn, midnight)
    missed = schedules.list_fires(conn, outcome=FireOutcome.MISSED, since=midnight, limit=1000)
    all_cells = [cell for row in rows for cell in row.cells.values()]
    return Summary(
        running=len(queries.unfinished_runs(conn, limit=1000)),
        failed_today=sum(counts[status] for status in FAILED),
        missed_today=len(missed),
        open_gaps=len(open_gaps(services, conn, now)),
        stale=sum(cell.state == "stale" for cell in all_cells),
        judged=len(all_cells),
    )


def next_fires(defined: list[ScheduleDef], now: datetime) -> dict[Job, datetime]:
    """Each job's next scheduled run (its enabled schedules' earliest next fire)."""
    out: dict[Job, datetime] = {}
    for definition in defined:
        if not definition.enabled:
            continue
        upcoming = upcoming_fires(definition, now, 1)
        if upcoming and (definition.job not in out or upcoming[0] < out[definition.job]):
            out[definition.job] = upcoming[0]
    return out


@router.get("/")
def overview(request: Request, user: Viewer) -> Response:
    services = services_of(request)
    now = services.clock.now()
    zone = chain_zone(services.config)
    with services.read_engine.connect() as conn:
        rows = build_rows(services, conn, now)
        summary = summarize(services, conn, rows, now)
        defined = [stored.definition for stored in schedules.list_schedules(conn)]
    return render(
        request,
        "overview.html",
        {
            "rows": rows,
            "attention": [cell for row in rows for cell in row.cells.values() if cell.needs_action],
            "jobs": JOBS,
            "summary": summary,
            "disabled": [d for d in defined if not d.enabled],
            "next_fire": next_fires(defined, now),
            "now": now,
            "today": now.astimezone(zone).date().isoformat(),
            "zone": zone,
            "live": summary.running > 0,
        },
    )
