"""Alerts, evaluated on their own clock (not when a run ends), deduplicated and rate-limited.

    open_alerts(conn, *, location_id=None) -> list[AlertRow]        what is wrong now
    recent_alerts(conn, *, since, location_id=None) -> list[AlertRow]   open, or cleared since
    AlertEvaluator(engine, *, config, settings, clock, channels, http, periods=None)
        .evaluate() -> Evaluation                  one evaluation at the clock's now
        .evaluate_if_leader(owner, ttl) -> Evaluation | None
                                                   the same, by one process of several sharing
                                                   the database (a named lock); None elsewhere

One evaluation:
  1. read the conditions that hold now (``ops.conditions``)
  2. open an alert for each new condition key; keep open ones still seen; clear the others
  3. announce: one message per newly opened alert, one recovery notice per location whose
     announced alerts cleared (never a message for a run that succeeded); more than ``BURST`` at
     once go out as one summary. At most ``alerts.rate_limit_per_hour`` messages per hour: the
     rest wait for the next evaluation with room (an alert that clears while waiting is never
     announced, nor its recovery)
  4. the daily digest (``alerts.daily_digest``), once a day after 07:00 in the chain's zone
  5. the dead-man ping (``alerts.deadman_url``): only an evaluation that got this far pings, so
     an outside monitor notices a dead service or a dead database

A message counts as announced when a channel took it (or no channel is configured: the alerts are
still visible in the API, CLI and control centre); when every channel failed it is tried again at
the next evaluation. Every message is recorded with what each channel answered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Connection, Engine, func, select

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.states import Job
from fluxion_etl.ops.channels import Channel, Message, deliver, ping_deadman
from fluxion_etl.ops.conditions import NEXT_STEP, AlertKind, Condition, current_conditions, keys
from fluxion_etl.settings import Settings
from fluxion_etl.store import alerts as store
from fluxion_etl.store.alerts import AlertRow
from fluxion_etl.store.schema import runs
from fluxion_etl.store.service_locks import try_lock

log = structlog.get_logger("fluxion.alerts")

BURST = 5
RATE_WINDOW = timedelta(hours=1)
RATE_LIMITED = ("alert", "recovery", "summary")
DIGEST_AT = time(7, 0)
LOCK_NAME = "alerts"
PREFIX = "[fluxion-etl]"

LABEL = {
    AlertKind.LOCATION_FAILING: "failing",
    AlertKind.STALE: "stale",
    AlertKind.GAP: "gap",
    AlertKind.MASS_DELETION_HELD: "mass deletion held",
    AlertKind.RUN_FAILED: "run failed",
    AlertKind.ABANDONED_RUN: "run abandoned",
    AlertKind.MISSED_FIRE: "missed fire",
}


def open_alerts(conn: Connection, *, location_id: str | None = None) -> list[AlertRow]:
    """Alerts open now, newest first."""
    return store.list_alerts(conn, open_only=True, location_id=location_id)


def recent_alerts(
    conn: Connection, *, since: datetime, location_id: str | None = None, limit: int = 200
) -> list[AlertRow]:
    """Alerts open now or cleared at or after ``since``, newest first."""
    return store.list_alerts(conn, since=since, location_id=location_id, limit=limit)


@dataclass(frozen=True, slots=True)
class Evaluation:
    at: datetime
    conditions: int
    opened: tuple[int, ...]
    cleared: tuple[int, ...]
    sent: tuple[Message, ...]
    waiting: int  # messages held back by the rate limit, for a later evaluation
    deadman_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: Message
    openings: tuple[int, ...] = ()
    recoveries: tuple[int, ...] = ()


class AlertEvaluator:
    def __init__(
        self,
        engine: Engine,
        *,
        config: ChainConfig,
        settings: Settings,
        clock: Clock,
        channels: Sequence[Channel],
        http: httpx.Client,
        periods: Callable[[], Mapping[Job, timedelta]] | None = None,
    ) -> None:
        self.engine, self.config, self.settings, self.clock = engine, config, settings, clock
        self.channels, self.http, self.periods = list(channels), http, periods

    def evaluate_if_leader(self, owner: str, ttl: timedelta) -> Evaluation | None:
        with self.engine.begin() as conn:
            if not try_lock(conn, LOCK_NAME, owner=owner, now=self.clock.now(), ttl=ttl):
                return None
        return self.evaluate()

    def evaluate(self) -> Evaluation:
        now = self.clock.now()
        found = keys(self._conditions(now))
        opened, cleared = self._record(found, now)
        sent, waiting = self._announce(now)
        digest = self._digest(now)
        deadman = self._ping()
        if opened or cleared or sent:
            log.info(
                "alerts evaluated",
                open=len(found),
                opened=len(opened),
                cleared=len(cleared),
                sent=len(sent),
                waiting=waiting,
            )
        return Evaluation(now, len(found), opened, cleared, (*sent, *digest), waiting, deadman)

    # --- 1-2: conditions into alert rows -------------------------------------------------------

    def _conditions(self, now: datetime) -> list[Condition]:
        periods = self.periods() if self.periods is not None else None
        with self.engine.connect() as conn:
            return current_conditions(conn, self.config, self.settings, now=now, periods=periods)

    def _record(
        self, found: Mapping[str, Condition], now: datetime
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        opened: list[int] = []
        cleared: list[int] = []
        with self.engine.begin() as conn:
            current = store.open_keys(conn)
            for key, condition in found.items():
                if key in current:
                    detail = dict(condition.detail)
                    store.still_seen(
                        conn, current[key], summary=condition.summary, detail=detail, now=now
                    )
                    continue
                alert_id = store.open_alert(
                    conn,
                    key=key,
                    kind=condition.kind.value,
                    job=condition.job,
                    location_id=condition.location_id,
                    subject=condition.subject,
                    summary=condition.summary,
                    detail=dict(condition.detail),
                    now=now,
                )
                if alert_id is not None:
                    opened.append(alert_id)
            for key, alert_id in current.items():
                if key not in found and store.clear_alert(conn, alert_id, now=now):
                    cleared.append(alert_id)
        return tuple(opened), tuple(cleared)

    # --- 3: announcing -------------------------------------------------------------------------

    def _announce(self, now: datetime) -> tuple[list[Message], int]:
        with self.engine.connect() as conn:
            openings = store.unannounced_openings(conn)
            recoveries = store.unannounced_recoveries(conn)
            used = store.messages_since(conn, now - RATE_WINDOW, kinds=RATE_LIMITED)
        outgoing = compose(openings, recoveries, now)
        budget = max(0, self.config.alerts.rate_limit_per_hour - used)
        sent = [self._send(item, now) for item in outgoing[:budget]]
        waiting = len(outgoing) - len(sent)
        if waiting:
            log.warning("alert messages held back by the rate limit", waiting=waiting)
        return [message for message in sent if message is not None], waiting

    def _send(self, item: _Outgoing, now: datetime) -> Message | None:
        results = deliver(self.channels, item.message)
        delivered = not self.channels or "ok" in results.values()
        with self.engine.begin() as conn:
            store.record_message(
                conn,
                now=now,
                kind=item.message.kind,
                subject=item.message.subject,
                body=item.message.text,
                alert_ids=item.message.alert_ids,
                deliveries=results,
                delivered=delivered,
            )
            if delivered:
                store.mark_announced(conn, item.openings, now=now, recovery=False)
                store.mark_announced(conn, item.recoveries, now=now, recovery=True)
        failed = {name: why for name, why in results.items() if why != "ok"}
        if failed:
            log.error("alert channel failed", subject=item.message.subject, failures=failed)
        return item.message if delivered else None

    # --- 4-5: digest and dead-man --------------------------------------------------------------

    def _digest(self, now: datetime) -> tuple[Message, ...]:
        if not self.config.alerts.daily_digest or not self.config.locations:
            return ()
        zone = self.config.locations[0].zone
        local = now.astimezone(zone)
        due = datetime.combine(local.date(), DIGEST_AT, tzinfo=zone)
        if local < due:
            return ()
        with self.engine.connect() as conn:
            last = store.last_message_at(conn, "digest")
            if last is not None and last >= due:
                return ()
            message = digest_message(conn, now=now)
        sent = self._send(_Outgoing(message), now)
        return () if sent is None else (sent,)

    def _ping(self) -> str | None:
        url = self.config.alerts.deadman_url
        if not url:
            return None
        error = ping_deadman(url, http=self.http)
        if error is not None:
            log.warning("dead-man ping failed", error=error)
        return error


# --- composing messages --------------------------------------------------------------------


def compose(
    openings: Sequence[AlertRow], recoveries: Sequence[AlertRow], now: datetime
) -> list[_Outgoing]:
    """One message per opening, one per location recovered; one summary for more than BURST."""
    by_location: dict[str | None, list[AlertRow]] = {}
    for alert in recoveries:
        by_location.setdefault(alert.location_id, []).append(alert)
    outgoing = [_opening(alert, now) for alert in openings]
    outgoing += [_recovery(location, rows, now) for location, rows in by_location.items()]
    if len(outgoing) > BURST:
        return [_summary(openings, recoveries, now)]
    return outgoing


def _opening(alert: AlertRow, now: datetime) -> _Outgoing:
    kind = AlertKind(alert.kind)
    text = "\n".join(
        [
            alert.summary,
            "",
            f"Since: {_stamp(alert.opened_at)}",
            f"Next: {NEXT_STEP[kind].format(loc=alert.location_id or 'LOCATION')}",
        ]
    )
    message = Message(
        "alert", f"{PREFIX} ALERT: {_title(alert)}", text, now, (alert.id,), (_plain(alert),)
    )
    return _Outgoing(message, openings=(alert.id,))


def _recovery(location_id: str | None, rows: Sequence[AlertRow], now: datetime) -> _Outgoing:
    where = location_id or "the service"
    lines = [f"{where} recovered:"]
    lines += [
        f"- {_title(row)} (since {_stamp(row.opened_at)}, cleared {_stamp(row.cleared_at)})"
        for row in rows
    ]
    ids = tuple(row.id for row in rows)
    what = ", ".join(sorted({_title(row, with_location=False) for row in rows}))
    message = Message(
        "recovery",
        f"{PREFIX} RECOVERED: {where} ({what})",
        "\n".join(lines),
        now,
        ids,
        tuple(_plain(row) for row in rows),
    )
    return _Outgoing(message, recoveries=ids)


def _summary(
    openings: Sequence[AlertRow], recoveries: Sequence[AlertRow], now: datetime
) -> _Outgoing:
    lines = [f"{len(openings)} new alert(s):"] if openings else []
    lines += [f"- {row.summary}" for row in openings]
    if recoveries:
        lines += ["", f"{len(recoveries)} recovered:"]
        lines += [f"- {_title(row)}" for row in recoveries]
    subject = f"{PREFIX} {len(openings)} new alert(s), {len(recoveries)} recovered"
    every = (*openings, *recoveries)
    message = Message(
        "summary",
        subject,
        "\n".join(lines),
        now,
        tuple(row.id for row in every),
        tuple(_plain(row) for row in every),
    )
    return _Outgoing(
        message,
        openings=tuple(row.id for row in openings),
        recoveries=tuple(row.id for row in recoveries),
    )


def digest_message(conn: Connection, *, now: datetime) -> Message:
    """Yesterday and today in a few lines: open alerts, what opened and cleared, runs by status."""
    since = now - timedelta(days=1)
    current = store.list_alerts(conn, open_only=True)
    recent = store.list_alerts(conn, since=since, limit=1000)
    opened = [row for row in recent if row.opened_at >= since]
    cleared = [row for row in recent if row.cleared_at is not None]
    counts = conn.execute(
        select(runs.c.job, runs.c.status, func.count())
        .where(runs.c.created_at >= since)
        .group_by(runs.c.job, runs.c.status)
        .order_by(runs.c.job, runs.c.status)
    ).all()
    lines = [f"Open alerts: {len(current)}"]
    lines += [f"- {row.summary}" for row in current[:50]]
    lines += ["", f"Last 24 h: {len(opened)} alert(s) opened, {len(cleared)} cleared", ""]
    lines += ["Runs in the last 24 h:"]
    lines += [f"- {job} {status}: {count}" for job, status, count in counts] or ["- none"]
    subject = f"{PREFIX} daily digest: {len(current)} open alert(s)"
    return Message(
        "digest", subject, "\n".join(lines), now, (), tuple(_plain(row) for row in current[:50])
    )


def _title(alert: AlertRow, *, with_location: bool = True) -> str:
    label = LABEL.get(AlertKind(alert.kind), alert.kind)
    what = " ".join(part for part in (alert.job, label) if part)
    if alert.subject:
        what += f" ({alert.subject})"
    if with_location and alert.location_id:
        what += f" at {alert.location_id}"
    return what


def _plain(alert: AlertRow) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "job": alert.job,
        "location_id": alert.location_id,
        "subject": alert.subject,
        "summary": alert.summary,
        "state": "open" if alert.is_open else "cleared",
        "opened_at": alert.opened_at.isoformat(),
        "cleared_at": alert.cleared_at.isoformat() if alert.cleared_at else None,
    }


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="minutes")
