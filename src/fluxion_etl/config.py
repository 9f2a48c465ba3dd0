"""The one configuration file (TOML): locations, schedules and alerts, loaded and validated once.

A bad file raises ConfigError naming the file, the key, the value and what to fix.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fluxion_etl.domain.records import (
    Location,
    LocationKind,
    OpeningHours,
    OpeningSpan,
    Warehouse,
    WarehouseRole,
)
from fluxion_etl.errors import ConfigError

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
DEFAULT_TIMEZONE = "America/Caracas"


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone (e.g. America/Caracas)") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseModel(_Strict):
    code: Annotated[str, Field(min_length=1, max_length=32)]
    role: WarehouseRole
    name: str | None = None


class LocationModel(_Strict):
    id: Annotated[str, Field(pattern=_ID)]
    name: Annotated[str, Field(min_length=1)]
    kind: LocationKind = LocationKind.STORE
    branch_code: str | None = None
    warehouses: Annotated[list[WarehouseModel], Field(min_length=1)]
    timezone: str = DEFAULT_TIMEZONE
    opening_hours: dict[str, str] = Field(default_factory=lambda: {"default": "07:00-21:00"})
    active: bool = True
    region: str | None = None

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: dict[str, str]) -> dict[str, str]:
        for day, spec in value.items():
            if day not in (*WEEKDAYS, "default"):
                raise ValueError(f"unknown day {day!r}: use mon..sun or default")
            parse_spans(spec)
        return value


class ActiveHoursModel(_Strict):
    start: time
    end: time
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))


class ScheduleModel(_Strict):
    name: Annotated[str, Field(pattern=_ID)]
    job: Literal["inventory", "sales", "reconcile"]
    cron: Annotated[str, Field(min_length=9)]
    timezone: str = DEFAULT_TIMEZONE
    enabled: bool = True
    locations: list[str] | None = None
    active_hours: ActiveHoursModel | None = None
    retry_attempts: Annotated[int, Field(ge=0, le=185)] = 2
    max_event_age_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600
    catch_up: Literal["latest", "all", "none"] = "latest"

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))


class AlertChannelModel(_Strict):
    kind: Literal["smtp", "webhook"]
    url: str | None = None
    host: str | None = None
    port: int | None = None
    sender: str | None = None
    recipients: list[str] = Field(default_factory=list)
    password_env: str | None = None
    username: str | None = None
    starttls: bool = False


class AlertsModel(_Strict):
    channels: list[AlertChannelModel] = Field(default_factory=list)
    gap_threshold_minutes: int = 120
    rate_limit_per_hour: int = 30
    daily_digest: bool = False
    deadman_url: str | None = None


class FileModel(_Strict):
    locations: Annotated[list[LocationModel], Field(min_length=1)]
    schedules: list[ScheduleModel] = Field(default_factory=list)
    alerts: AlertsModel = Field(default_factory=AlertsModel)


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """The validated configuration file."""

    source: str
    locations: tuple[Location, ...]
    schedules: tuple[ScheduleModel, ...]
    alerts: AlertsModel

    def location(self, location_id: str) -> Location:
        for loc in self.locations:
            if loc.id == location_id:
                return loc
        raise KeyError(location_id)

    @property
    def location_ids(self) -> tuple[str, ...]:
        return tuple(loc.id for loc in self.locations)


def parse_spans(spec: str) -> tuple[OpeningSpan, ...]:
    """``"07:00-21:00"``, ``"07:00-12:00,14:00-20:00"``, ``"07:00-24:00"`` or ``"closed"``."""
    spec = spec.strip()
    if spec == "closed":
        return ()
    spans = []
    for part in spec.split(","):
        match = _SPAN.match(part.strip())
        if not match:
            raise ValueError(f"{part!r} is not HH:MM-HH:MM (or 'closed')")
        oh, om, ch, cm = (int(g) for g in match.groups())
        if oh > 23 or om > 59 or ch > 24 or cm > 59 or (ch == 24 and cm):
            raise ValueError(f"{part!r} has an impossible time")
        opens, closes = time(oh, om), time(0, 0) if ch == 24 else time(ch, cm)
        if closes != time(0, 0) and closes <= opens:
            raise ValueError(f"{part!r} closes before it opens (use 24:00 for midnight)")
        spans.append(OpeningSpan(opens, closes))
    return tuple(spans)


def _opening_hours(spec: dict[str, str]) -> OpeningHours:
    default = spec.get("default", "07:00-21:00")
    return OpeningHours(tuple(parse_spans(spec.get(day, default)) for day in WEEKDAYS))


def _to_location(model: LocationModel) -> Location:
    return Location(
        id=model.id,
        name=model.name,
        kind=model.kind,
        branch_code=model.branch_code,
        warehouses=tuple(Warehouse(w.code, w.role, w.name) for w in model.warehouses),
        timezone=model.timezone,
        opening_hours=_opening_hours(model.opening_hours),
        active=model.active,
        region=model.region,
    )


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_semantics(model: FileModel, source: str) -> None:
    seen: set[str] = set()
    for i, loc in enumerate(model.locations):
        key = f"locations[{i}]"
        if loc.id in seen:
            raise ConfigError(source, f"{key}.id", loc.id, "location ids must be unique")
        seen.add(loc.id)
        if loc.kind is LocationKind.STORE and not loc.branch_code:
            raise ConfigError(
                source,
                f"{key}.branch_code",
                None,
                "a store needs its KLK branch code (e.g. SUC001); "
                'use kind = "distribution_centre" for a location without sales',
            )
        roles = [w.role for w in loc.warehouses]
        if loc.kind is LocationKind.STORE and WarehouseRole.SALES_FLOOR not in roles:
            raise ConfigError(
                source,
                f"{key}.warehouses",
                [w.code for w in loc.warehouses],
                'a store needs one warehouse with role = "sales_floor" (its sales are read there)',
            )
        if roles.count(WarehouseRole.SALES_FLOOR) > 1:
            raise ConfigError(source, f"{key}.warehouses", roles, "only one sales_floor warehouse")
    names: set[str] = set()
    for i, sched in enumerate(model.schedules):
        if sched.name in names:
            raise ConfigError(source, f"schedules[{i}].name", sched.name, "names must be unique")
        names.add(sched.name)
        for loc_id in sched.locations or []:
            if loc_id not in seen:
                raise ConfigError(
                    source,
                    f"schedules[{i}].locations",
                    loc_id,
                    f"unknown location; known: {', '.join(sorted(seen))}",
                )


def parse_config(data: dict[str, Any], source: str) -> ChainConfig:
    try:
        model = FileModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        fix = err["msg"]
        if err["type"] == "extra_forbidden":
            fix = "unknown key: remove it or check its spelling"
        elif err["type"] == "missing":
            fix = "required key is missing"
        raise ConfigError(source, _dotted(err["loc"]), err.get("input"), fix) from None
    _check_semantics(model, source)
    return ChainConfig(
        source=source,
        locations=tuple(_to_location(m) for m in model.locations),
        schedules=tuple(model.schedules),
        alerts=model.alerts,
    )


def bundled_config_text() -> str:
    return resources.files("fluxion_etl").joinpath("examples/chain.toml").read_text("utf-8")


def load_config(path: Path | None) -> ChainConfig:
    """Load and validate the file at ``path``; ``None`` means the bundled example chain."""
    if path is None:
        source, text = "<bundled examples/chain.toml>", bundled_config_text()
    else:
        source = str(path)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(source, "FLUXION_CONFIG", str(path), "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(source, "FLUXION_CONFIG", str(path), f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", None, f"not valid TOML: {exc}") from None
    return parse_config(data, source)
