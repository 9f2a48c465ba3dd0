"""Settings from the environment (prefix ``FLUXION_``), built by ``load_settings()``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fluxion_etl.errors import ConfigError

SECRET_SETTINGS = frozenset({"session_secret", "metrics_token"})
MIN_SECRET_LENGTH = 16
# AWS identifiers: a typo here would only show as a failed launch, hours later.
AWS_FORMATS = {
    "ecs_cluster": (r"\S+", "a cluster name or ARN, e.g. fluxion"),
    "ecs_task_definition": (r"\S+", "a family, family:revision or ARN, e.g. fluxion-etl-worker"),
    "ecs_subnets": (r"subnet-[0-9A-Za-z]+", "subnet ids, comma-separated, e.g. subnet-0a1b2c3d"),
    "ecs_security_groups": (r"sg-[0-9A-Za-z]+", "security group ids, e.g. sg-0a1b2c3d"),
    "ecs_container_name": (r"[A-Za-z0-9_-]{1,255}", "a container name, e.g. worker"),
    "ecs_region": (r"[a-z]{2}(-[a-z]+)+-[0-9]+", "a region name, e.g. us-east-1"),
}


class Settings(BaseSettings):
    # No infinite or NaN number: an infinite timeout is a hang, not a setting.
    model_config = SettingsConfigDict(
        env_prefix="FLUXION_", extra="ignore", frozen=True, allow_inf_nan=False
    )

    # Out of repr: a URL may carry the database password (errors show it redacted, see below).
    database_url: str = Field("sqlite:///fluxion.db", repr=False)
    klk_base_url: str = "http://127.0.0.1:7002"
    config: Path | None = None

    klk_connect_timeout: float = Field(5.0, gt=0)
    klk_catalogue_read_timeout: float = Field(30.0, gt=0)
    klk_sales_read_timeout: float = Field(600.0, gt=0)
    klk_retry_attempts: int = Field(3, ge=1, le=10)
    klk_retry_initial_wait: float = Field(0.5, ge=0)
    klk_retry_max_wait: float = Field(10.0, ge=0)

    concurrency: int = Field(3, ge=1, le=64)
    lease_ttl_seconds: float = Field(120.0, gt=0)
    heartbeat_seconds: float = Field(20.0, gt=0)
    inventory_deadline_seconds: float = Field(20 * 60, gt=0)
    sales_deadline_seconds: float = Field(25 * 60, gt=0)
    reconcile_deadline_seconds: float = Field(60 * 60, gt=0)

    sales_overlap_minutes: int = Field(60, ge=0)
    max_range_days: int = Field(31, ge=1)
    reconcile_days: int = Field(2, ge=1)
    mass_deletion_threshold: float = Field(0.05, ge=0, le=1)
    history_retention_days: int = Field(90, ge=1)
    raw_payload_retention_days: int = Field(14, ge=1)
    raw_payload_max_bytes: int = Field(5_000_000, ge=1024)
    run_log_max_lines: int = Field(2000, ge=10)
    circuit_failure_threshold: int = Field(3, ge=1)
    circuit_reset_seconds: float = Field(300.0, gt=0)
    circuit_reset_max_seconds: float = Field(3600.0, gt=0)  # each failed probe doubles the period

    # Operations (fluxion_etl.ops): gaps and their recovery, alerts, metrics, retention.
    gap_days: int = Field(14, ge=1, le=92)
    auto_recover: bool = True
    auto_recover_max_in_flight: int = Field(1, ge=1, le=16)
    auto_recover_cooldown_minutes: int = Field(60, ge=1)
    alerts_interval_seconds: float = Field(60.0, gt=0)
    run_log_retention_days: int = Field(30, ge=1)
    metrics_token: SecretStr | None = None  # a scrape-only bearer token for /metrics

    launcher: Literal["inline", "pool", "subprocess", "ecs"] = "inline"
    # FLUXION_LAUNCHER=subprocess or pool: worker processes run this many steps nicer than `serve`
    # (0: as nice as it), so busy workers do not take the cores from the API's calls.
    subprocess_worker_nice: int = Field(10, ge=0, le=19)
    # FLUXION_LAUNCHER=pool: worker processes started with the service, each executing one run at
    # a time (more runs wait queued for a free worker).
    pool_workers: int = Field(2, ge=1, le=32)
    scheduler: Literal["embedded", "external"] = "embedded"
    log_format: Literal["auto", "json", "console"] = "auto"

    # Signs the control centre's session cookies. Unset: a random key per process, so sessions end
    # on restart and are not shared between processes (set it when several serve one database).
    session_secret: SecretStr | None = None
    session_hours: float = Field(12.0, gt=0, le=24 * 30)

    # FLUXION_LAUNCHER=ecs: each run is an ECS task ``fluxion-etl worker --run-id ID``.
    ecs_cluster: str | None = None
    ecs_task_definition: str | None = None  # family (latest ACTIVE revision), family:rev or ARN
    ecs_subnets: Annotated[tuple[str, ...], NoDecode] = ()  # comma-separated ids
    ecs_security_groups: Annotated[tuple[str, ...], NoDecode] = ()
    ecs_container_name: str = "worker"
    ecs_assign_public_ip: bool = False
    ecs_region: str | None = None  # None: the AWS default chain (ECS sets AWS_REGION)

    @field_validator("ecs_subnets", "ecs_security_groups", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(*AWS_FORMATS)
    @classmethod
    def _aws_identifier(
        cls, value: str | tuple[str, ...] | None, info: ValidationInfo
    ) -> str | tuple[str, ...] | None:
        pattern, example = AWS_FORMATS[str(info.field_name)]
        values = (value,) if isinstance(value, str) else value or ()
        for item in values:
            if not re.fullmatch(pattern, item):
                raise ValueError(f"{item!r} is not {example}")
        return value

    @field_validator("klk_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. http://10.0.0.5:7002")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"has a malformed port ({exc})") from None
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if not value.startswith(("sqlite:///", "postgresql+psycopg://")):
            raise ValueError(
                "must start with sqlite:/// or postgresql+psycopg:// "
                "(e.g. postgresql+psycopg://user@host:5432/db)"
            )
        try:
            urlsplit(value).port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"has a malformed port ({exc})") from None
        return value

    @field_validator("session_secret", "metrics_token")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`); "
                "unset it rather than leave it empty"
            )
        return value

    @field_validator("heartbeat_seconds")
    @classmethod
    def _beats_within_lease(cls, value: float, info: ValidationInfo) -> float:
        ttl = info.data.get("lease_ttl_seconds")
        if ttl is not None and value >= ttl:
            raise ValueError(
                f"must be shorter than FLUXION_LEASE_TTL_SECONDS ({ttl:g}): a lease would expire "
                "between two heartbeats and running work be taken for dead"
            )
        return value

    def deadline_seconds(self, job: str) -> float:
        return {
            "inventory": self.inventory_deadline_seconds,
            "sales": self.sales_deadline_seconds,
            "reconcile": self.reconcile_deadline_seconds,
        }[job]


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides); a bad value raises ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "*"
        fix = err["msg"].removeprefix("Value error, ")
        raise ConfigError(
            "environment", f"FLUXION_{name.upper()}", shown_value(name, err.get("input")), fix
        ) from None


def shown_value(name: str, value: object) -> object:
    """A setting's value as an error may show it: never a secret, nor a URL's password."""
    if name in SECRET_SETTINGS:
        return "(hidden)"
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """``scheme://user:***@host/...``: the password of a URL replaced, the rest kept."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()
