"""Runs: the ledger as a filterable table, one run in detail, and the actions on runs.

    GET  /runs                  filter by job, status, location, trigger and local date
    GET  /runs/{id}             per location: status, rows by action, phase timings, error; logs
    POST /runs/start            start a job for every location or one (trigger)
    POST /runs/{id}/rerun       a new run of the same job over the locations that did not succeed
    POST /runs/{id}/cancel      cancel a queued or running run (admin)

Both pages refresh themselves while a run they show is queued or running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from fluxion_etl.domain.requests import ItemCounters, RunRequest
from fluxion_etl.domain.states import ItemStatus, Job, RunStatus, Trigger
from fluxion_etl.domain.windows import local_midnight
from fluxion_etl.store import audit, ledger, sync_state
from fluxion_etl.store.ledger import ItemRow, LogRow, RunRow
from fluxion_etl.web import actions, queries
from fluxion_etl.web.auth import safe_next
from fluxion_etl.web.deps import Administrator, Operator, PageNotFound, Viewer
from fluxion_etl.web.i18n import Message, Translator
from fluxion_etl.web.render import (
    chain_zone,
    location_zone,
    page_translator,
    redirect,
    render,
    services_of,
)

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
LOG_LIMIT = 2000
STARTABLE = (Job.INVENTORY, Job.SALES, Job.RECONCILE)


def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _run_id(value: str) -> int:
    if not value.isdigit() or len(value) > 15:
        raise PageNotFound(Message("error.no_run", {"run_id": value[:20]}))
    return int(value)


@router.get("/runs")
def runs_page(
    *,
    request: Request,
    user: Viewer,
    job: str | None = None,
    status: str | None = None,
    location: str | None = None,
    trigger: str | None = None,
    day: str | None = None,
    offset: int = 0,
) -> Response:
    services = services_of(request)
    zone = chain_zone(services.config)
    on = _day(day)
    if day and on is None:  # a filter silently dropped would list every run as if it applied
        return redirect(request, "/runs", Message("flash.bad_day", kind="error"))
    where = queries.RunFilter(
        job=_choice(job, tuple(Job)),
        status=_choice(status, tuple(RunStatus)),
        location_id=_choice(location, services.config.location_ids),
        trigger=_choice(trigger, tuple(Trigger)),
        since=local_midnight(on, zone) if on else None,
        until=local_midnight(on + timedelta(days=1), zone) if on else None,
    )
    offset = max(0, min(offset, 1_000_000))
    with services.read_engine.connect() as conn:
        rows = queries.find_runs(conn, where, limit=PAGE_SIZE + 1, offset=offset)
        items = queries.item_statuses(conn, [run.id for run in rows[:PAGE_SIZE]])
    shown = rows[:PAGE_SIZE]
    filters = {
        "job": where.job,
        "status": where.status,
        "location": where.location_id,
        "trigger": where.trigger,
        "day": on.isoformat() if on else None,
    }
    return render(
        request,
        "runs.html",
        {
            "runs": shown,
            "items": items,
            "where": where,
            "day": on.isoformat() if on else "",
            "offset": offset,
            "more": len(rows) > PAGE_SIZE,
            "query_without_offset": urlencode({k: v for k, v in filters.items() if v}),
            "page_size": PAGE_SIZE,
            "zone": zone,
            "jobs": tuple(Job),
            "statuses": tuple(RunStatus),
            "triggers": tuple(Trigger),
            "locations": services.config.locations,
            "live": any(not run.status.is_final for run in shown),
        },
    )


@dataclass(frozen=True, slots=True)
class Phases:
    """An item's phase timings as shares of the slowest item's total, for the bars."""

    extract: float
    transform: float
    load: float


def phase_bars(items: list[ItemRow]) -> dict[str, Phases]:
    longest = max((i.extract_ms + i.transform_ms + i.load_ms for i in items), default=0)
    if longest <= 0:
        return {i.location_id: Phases(0, 0, 0) for i in items}
    return {
        i.location_id: Phases(
            100 * i.extract_ms / longest,
            100 * i.transform_ms / longest,
            100 * i.load_ms / longest,
        )
        for i in items
    }


_NOT_LOADED = re.compile(
    r"(\d+) of (\d+) locations not loaded(?:; mass deletion held at (\d+))?(?:; (.*))?", re.S
)
_ASKED_TO_CANCEL = re.compile(r"cancel requested by (.+) at (\S+)")
_CANCELLED_BEFORE = re.compile(r"cancelled by (.+) at (\S+) before it started")
_FIXED_MESSAGES = {
    "cancelled on request": "run.msg.cancelled",
    "the run's deadline passed": "run.msg.deadline",
    "no location in scope has this job": "run.msg.no_location",
    "interrupted from the command line": "run.msg.interrupted",
}


def run_summary(run: RunRow, t: Translator, zone: tzinfo) -> str | None:
    """The run's message in the page's language, when the runner or the ledger wrote it in one
    of their known forms (a location's own error, often KLK's words, stays as written)."""
    message = run.error_message or ""
    if message in _FIXED_MESSAGES:
        return t(_FIXED_MESSAGES[message])
    if found := _NOT_LOADED.fullmatch(message):
        failed, total, held, rest = found.groups()
        text = t("run.msg.not_loaded", failed=int(failed), total=int(total))
        if held:
            text += "; " + t("run.msg.held", count=int(held))
        return text + (f"; {rest}" if rest else "")
    for pattern, key in ((_ASKED_TO_CANCEL, "run.msg.cancel_requested"),
                         (_CANCELLED_BEFORE, "run.msg.cancelled_before")):  # fmt: skip
        if found := pattern.fullmatch(message):
            by, stamp = found.groups()
            try:
                at = datetime.fromisoformat(stamp).astimezone(zone).strftime("%d/%m %H:%M %Z")
            except ValueError:
                at = stamp
            return t(key, by=by, at=at)
    return None


def not_succeeded(items: list[ItemRow]) -> list[str]:
    return [i.location_id for i in items if i.status is not ItemStatus.SUCCEEDED]


def paused_until(
    conn: Connection, job: str, location_ids: list[str], now: datetime
) -> dict[str, datetime]:
    """Those of ``location_ids`` whose circuit is open now, and until when: a re-run would only
    skip them (``skipped_open_circuit``), so they are not offered one."""
    paused: dict[str, datetime] = {}
    for location_id in location_ids:
        state = sync_state.get_state(conn, job, location_id)
        if state is not None and state.circuit_open(now) and state.circuit_open_until is not None:
            paused[location_id] = state.circuit_open_until
    return paused


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, user: Viewer, q: str = "", level: str = "") -> Response:
    services = services_of(request)
    number = _run_id(run_id)
    with services.read_engine.connect() as conn:
        run = ledger.get_run(conn, number)
        if run is None:
            raise PageNotFound(Message("error.no_run", {"run_id": number}))
        items = ledger.get_items(conn, number)
        logs = ledger.read_logs(conn, number, limit=LOG_LIMIT)
        failed = not_succeeded(items) if run.status.is_final else []
        paused = paused_until(conn, run.job.value, failed, services.clock.now())
    shown = filter_logs(logs, q, level)
    return render(
        request,
        "run.html",
        {
            "run": run,
            "items": items,
            "totals": sum((i.counters for i in items), ItemCounters()),
            "bars": phase_bars(items),
            "summary": run_summary(run, page_translator(request), chain_zone(services.config)),
            "retry": [location_id for location_id in failed if location_id not in paused],
            "paused": paused,
            "logs": shown,
            "log_total": len(logs),
            "q": q,
            "level": level,
            "zone": chain_zone(services.config),
            "zone_of": lambda location_id: location_zone(services.config, location_id),
            "names": {loc.id: loc.name for loc in services.config.locations},
            "live": not run.status.is_final,
            "duration": _duration(run, services.clock.now()),
        },
    )


def filter_logs(lines: list[LogRow], text: str, level: str) -> list[LogRow]:
    """Lines whose event, location or fields contain ``text`` (any case), of ``level``."""
    needle = text.strip().lower()
    out = []
    for line in lines:
        if level and line.level != level:
            continue
        haystack = f"{line.event} {line.location_id or ''} {line.fields or ''}".lower()
        if needle and needle not in haystack:
            continue
        out.append(line)
    return out


def _duration(run: RunRow, now: datetime) -> float | None:
    """Until it finished; a run still running has run until now (its heartbeat is up to 20 s
    old, and a run that started a few seconds ago has had none yet)."""
    if run.started_at is None:
        return None
    end = run.finished_at or (now if not run.status.is_final else run.started_at)
    return max(0.0, (end - run.started_at).total_seconds())


@router.post("/runs/start")
def start_job(
    request: Request,
    user: Operator,
    job: Annotated[str, Form()] = "",
    location: Annotated[str, Form()] = "",
    back: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    services = services_of(request)
    if job not in STARTABLE:
        return redirect(request, safe_next(back), Message("flash.bad_job", kind="error"))
    run_request = RunRequest(
        job=Job(job),
        trigger=Trigger.API,
        locations=(location,) if location else None,
        requested_by=user.name,
    )
    started = actions.start(services, run_request, user, action="run.trigger")
    target = f"/runs/{started.run_id}" if started.run_id else safe_next(back)
    return redirect(request, target, started.message)


@router.post("/runs/{run_id}/rerun")
def rerun(request: Request, run_id: str, user: Operator) -> Response:
    services = services_of(request)
    number = _run_id(run_id)
    with services.read_engine.connect() as conn:
        run = ledger.get_run(conn, number)
        if run is None:
            raise PageNotFound(Message("error.no_run", {"run_id": number}))
        failed = not_succeeded(ledger.get_items(conn, number))
        paused = paused_until(conn, run.job.value, failed, services.clock.now())
        failed = [location_id for location_id in failed if location_id not in paused]
    if not run.status.is_final or not failed:
        return redirect(request, f"/runs/{number}", Message("flash.nothing_to_rerun"))
    run_request = RunRequest(
        job=run.job,
        trigger=Trigger.API,
        locations=tuple(failed),
        date_from=run.date_from,
        date_to=run.date_to,
        requested_by=user.name,
        params={**run.params, "rerun_of": number},
    )
    started = actions.start(
        services, run_request, user, action="run.rerun", detail={"rerun_of": number}
    )
    return redirect(request, f"/runs/{started.run_id or number}", started.message)


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, user: Administrator) -> Response:
    services = services_of(request)
    number = _run_id(run_id)
    now = services.clock.now()
    with services.engine.begin() as conn:
        before = ledger.get_run(conn, number)
        if before is None:
            raise PageNotFound(Message("error.no_run", {"run_id": number}))
        if before.status.is_final:
            message = Message("flash.already_ended", {"run_id": number}, "error")
            return redirect(request, f"/runs/{number}", message)
        after = ledger.request_cancel(conn, number, by=user.name, now=now)
        assert after is not None
        audit.record(
            conn,
            actor=user.name,
            action="run.cancel",
            target=f"run:{number}",
            now=now,
            detail={
                "status_before": before.status.value,
                "status_after": after.status.value,
                "via": "web",
            },
        )
    key = "flash.cancelled" if after.status.is_final else "flash.cancel_requested"
    return redirect(request, f"/runs/{number}", Message(key, {"run_id": number}, "success"))
