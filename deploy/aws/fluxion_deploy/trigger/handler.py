"""The trigger: EventBridge Scheduler invokes this function, which asks the service for a run.

Standard library plus the boto3 the Lambda runtime provides; nothing of the product is imported,
so the function ships as this one file.

The Scheduler input names the fire::

    {"schedule": "inventory", "job": "inventory", "locations": null,
     "scheduled_time": "<aws.scheduler.scheduled-time>", ...}

and the function POSTs the existing trigger contract (SPEC §6) for the job, with the scheduler
headers (``X-Fluxion-Schedule``, ``X-Fluxion-Scheduled-Time``: the service's idempotency key for
the fire, so a repeated delivery is one run) and the bearer token, read from Secrets Manager once
per execution environment.

Answers, and what Lambda does with them (it retries a raised error with its asynchronous invoke
settings, then sends the event to the on-failure destination):

- any 2xx succeeds: a started run (202), or a fire answered as not started (200 with ``status``
  ``skipped_disabled``, ``skipped_inactive_hours``, ``missed`` or ``duplicate``);
- 409 succeeds: the locations are busy with another run, whose id is logged;
- connection errors, timeouts and 5xx raise ``ServiceUnavailable`` (worth retrying);
- any other answer (401, 403, 422, 404...) raises ``TriggerRejected`` with the answer's text: a
  retry cannot fix it, but it must reach the dead-letter queue and the alarm, never pass silently.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

import boto3  # provided by the Lambda runtime

log = logging.getLogger("fluxion.trigger")
log.setLevel(logging.INFO)

# The trigger contract's route per job (SPEC §6). Reconcile has no route in the contract of the
# field; the service serves it beside the others.
JOB_PATHS = {
    "inventory": "/api/etl/sync",
    "sales": "/api/etl/sync/ventas",
    "reconcile": "/api/etl/sync/reconcile",
}
SCHEDULE_HEADER = "X-Fluxion-Schedule"
SCHEDULED_TIME_HEADER = "X-Fluxion-Scheduled-Time"
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TEXT = 500

_token_cache: dict[str, str] = {}  # secret id → token, for the life of the execution environment


class TriggerError(Exception):
    """The fire was not accepted; raising makes Lambda retry, then dead-letter the event."""


class ServiceUnavailable(TriggerError):
    """No answer, a timeout, or a 5xx: the service may accept the fire on a retry."""


class TriggerRejected(TriggerError):
    """The service refused the fire (401, 403, 422...): fix the token or the schedule."""


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """Lambda entry point: one scheduler fire → one POST to the service."""
    fire = parse_fire(event)
    path, body = request_for(fire["job"], fire["locations"])
    url = os.environ["FLUXION_SERVICE_URL"].rstrip("/") + path
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token()}",
        SCHEDULE_HEADER: fire["schedule"],
        SCHEDULED_TIME_HEADER: fire["scheduled_time"],
    }
    status, answer = post(url, body, headers, timeout=_timeout())
    return judge(status, answer, fire)


def parse_fire(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of the Scheduler input this function needs; a malformed event raises."""
    missing = [k for k in ("schedule", "job", "scheduled_time") if not event.get(k)]
    if missing:
        raise ValueError(f"scheduler input lacks {', '.join(missing)}: {json.dumps(event)[:300]}")
    if event["job"] not in JOB_PATHS:
        raise ValueError(f"unknown job {event['job']!r}; known: {', '.join(JOB_PATHS)}")
    locations = event.get("locations")
    return {
        "schedule": str(event["schedule"]),
        "job": str(event["job"]),
        "scheduled_time": str(event["scheduled_time"]),
        "locations": None if locations is None else [str(x) for x in locations],
        "attempt": event.get("attempt"),
    }


def request_for(job: str, locations: list[str] | None) -> tuple[str, dict[str, Any]]:
    """The contract's path and body. The contract names one location or ``null``; for a fire,
    ``null`` means the schedule's own scope (the service reads it from the schedule), so only a
    schedule of exactly one location names it."""
    one = locations[0] if locations is not None and len(locations) == 1 else None
    return JOB_PATHS[job], {"ubicacion_id": one}


def post(
    url: str, body: dict[str, Any], headers: dict[str, str], *, timeout: float
) -> tuple[int, dict[str, Any]]:
    """POST JSON; returns (status, answer) for any HTTP answer, raises when there is none."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailable(f"POST {url}: no answer: {reason}") from exc


def judge(status: int, answer: dict[str, Any], fire: dict[str, Any]) -> dict[str, Any]:
    """Succeed (return a summary) or raise, per the module docstring."""
    summary = {
        "schedule": fire["schedule"],
        "scheduled_time": fire["scheduled_time"],
        "http_status": status,
        "status": answer.get("status"),
        "run_id": answer.get("run_id"),
        "message": answer.get("message"),
    }
    if 200 <= status < 300:
        _log("fire accepted", summary)
        return summary
    if status == 409:
        _log(
            "fire met a busy run; nothing to start",
            {**summary, "running_run_id": summary["run_id"]},
        )
        return summary
    text = str(answer.get("message") or answer.get("detail") or answer.get("_text") or "")[
        :MAX_TEXT
    ]
    if status >= 500:
        raise ServiceUnavailable(f"the service answered {status}: {text}")
    raise TriggerRejected(f"the service refused the fire with {status}: {text}")


def token() -> str:
    """The bearer token from Secrets Manager, fetched once per execution environment."""
    secret_id = os.environ["FLUXION_TOKEN_SECRET_ARN"]
    cached = _token_cache.get(secret_id)
    if cached is None:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        cached = _token_cache[secret_id] = str(value).strip()
    return cached


def _timeout() -> float:
    return float(os.environ.get("FLUXION_TRIGGER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"_text": raw[:MAX_TEXT].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"_text": str(value)[:MAX_TEXT]}


def _log(event: str, fields: dict[str, Any]) -> None:
    """One JSON line per fire, searchable in CloudWatch Logs Insights."""
    log.info(json.dumps({"event": event, **fields}, default=str))
