"""Every error fluxion-etl raises on purpose.

    FluxionError                      base; ``str(err)`` is the message an operator reads
    ├── ConfigError                   configuration file or environment is wrong (exit 2)
    ├── BadInputError                 a CLI flag or API body is wrong (exit 2 / HTTP 422)
    │   ├── CronError                 a cron expression or time zone is invalid
    │   ├── InexpressibleError        a schedule cannot be exported (EventBridge, crontab)
    │   ├── UnknownScheduleError      no schedule of that name (HTTP 404)
    │   └── ScheduleChangeRefusedError  a change the scheduler mode forbids (HTTP 409)
    ├── KlkError                      one KLK call failed; carries ``category`` (SPEC §4)
    │   ├── KlkNetworkError           network: connection refused, DNS, reset
    │   ├── KlkTimeoutError           timeout: connect or read timeout
    │   ├── KlkHttpStatusError        http_status: a non-2xx answer
    │   ├── KlkErrorBodyError         error_body: HTTP 200 with {"error": ...}
    │   ├── KlkBadPayloadError        bad_payload: undecodable JSON or row
    │   └── KlkCountMismatchError     count_mismatch: meta count != rows returned
    ├── MassDeletionHeldError         mass_deletion_held: a deletion above the threshold
    ├── SchemaNotReadyError           the database schema is missing or behind
    ├── AlertDeliveryError            an alert channel (SMTP, webhook) did not take a message
    └── DeadlineExceededError         deadline: the run's deadline passed

KLK errors keep the raw body (when there was one) so it can be stored for inspection.
"""

from __future__ import annotations

from fluxion_etl.domain.states import ErrorCategory


class FluxionError(Exception):
    """Base of every deliberate error."""


class ConfigError(FluxionError):
    """The configuration is wrong; the message names the file, key, value and fix."""

    NO_VALUE: object = object()
    """``value`` for a key that has none to show (a missing key, a syntax error)."""

    def __init__(self, source: str, key: str, value: object, fix: str) -> None:
        self.source, self.key, self.value, self.fix = source, key, value, fix
        if value is ConfigError.NO_VALUE:
            super().__init__(f"{source}: {key}: {fix}")
            return
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{source}: {key} = {shown}: {fix}")


class BadInputError(FluxionError):
    """A user-supplied value (CLI flag, API field) is wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class KlkError(FluxionError):
    category: ErrorCategory = ErrorCategory.NETWORK

    def __init__(self, call: str, detail: str, *, raw: bytes | None = None) -> None:
        self.call, self.detail, self.raw = call, detail, raw
        super().__init__(f"KLK {call}: {self.category.value}: {detail}")


class KlkNetworkError(KlkError):
    category = ErrorCategory.NETWORK


class KlkTimeoutError(KlkError):
    category = ErrorCategory.TIMEOUT


class KlkHttpStatusError(KlkError):
    category = ErrorCategory.HTTP_STATUS

    def __init__(self, call: str, status_code: int, *, raw: bytes | None = None) -> None:
        self.status_code = status_code
        snippet = (raw or b"")[:200].decode("utf-8", "replace")
        super().__init__(call, f"HTTP {status_code} {snippet}".strip(), raw=raw)


class KlkErrorBodyError(KlkError):
    category = ErrorCategory.ERROR_BODY


class KlkBadPayloadError(KlkError):
    category = ErrorCategory.BAD_PAYLOAD


class KlkCountMismatchError(KlkError):
    category = ErrorCategory.COUNT_MISMATCH

    def __init__(
        self, call: str, declared: int, returned: int, *, raw: bytes | None = None
    ) -> None:
        self.declared, self.returned = declared, returned
        super().__init__(call, f"meta declares {declared} rows, {returned} returned", raw=raw)


class MassDeletionHeldError(FluxionError):
    category = ErrorCategory.MASS_DELETION_HELD

    def __init__(
        self, location_id: str, what: str, count: int, total: int, threshold: float
    ) -> None:
        self.location_id, self.count, self.total = location_id, count, total
        super().__init__(
            f"{location_id}: {count} of {total} {what} would be deleted "
            f"(> {threshold:.0%}); held back. Check KLK, then apply with "
            f"`fluxion-etl run reconcile --location {location_id} --allow-mass-deletion`."
        )


class SchemaNotReadyError(FluxionError):
    def __init__(self, current: str | None, head: str, *, why: str | None = None) -> None:
        state = "missing" if current is None else f"at {current}"
        super().__init__(
            why
            or f"database schema is {state}, the code needs {head}: run `fluxion-etl db upgrade`"
        )


class AlertDeliveryError(FluxionError):
    """An alert channel refused or could not take a message; the alert is retried later."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel, self.reason = channel, reason
        super().__init__(f"alert channel {channel}: {reason}")


class DeadlineExceededError(FluxionError):
    category = ErrorCategory.DEADLINE


class CronError(BadInputError):
    """A cron expression or time zone that fluxion-etl cannot schedule; says what to write."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression, self.reason = expression, reason
        super().__init__("cron", f"{expression!r}: {reason}")


class InexpressibleError(BadInputError):
    """A schedule the export target cannot express; ``reason`` says why and what to change."""

    def __init__(self, schedule_name: str, target: str, reason: str) -> None:
        self.schedule_name, self.target, self.reason = schedule_name, target, reason
        super().__init__("schedule", f"{schedule_name}: cannot be expressed for {target}: {reason}")


class UnknownScheduleError(BadInputError):
    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        super().__init__("schedule", f"no schedule {name!r}; known: {', '.join(known) or 'none'}")


class ScheduleChangeRefusedError(BadInputError):
    """A run-time change the scheduler mode cannot apply (e.g. cron under EventBridge)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__("schedule", f"{name}: {message}")
