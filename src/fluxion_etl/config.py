"""The one configuration file (TOML): locations, schedules and alerts, loaded and validated once.

A bad file raises ConfigError naming the file, the key, the value and what to fix.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from fluxion_etl.domain.cron import validate_cron
from fluxion_etl.domain.records import (
    Location,
    LocationKind,
    OpeningHours,
    OpeningSpan,
    Warehouse,
    WarehouseRole,
)
from fluxion_etl.domain.schedules import ActiveHours
from fluxion_etl.errors import BadInputError, ConfigError, CronError

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ADDRESS = r"^[^@\s]+@[^@\s]+$"
DEFAULT_TIMEZONE = "America/Caracas"
PATTERN_HINTS = {
    _ID: "use 1-64 lower-case letters, digits, _ and -, starting with a letter or digit",
    _ENV_NAME: "name an environment variable (letters, digits and _), e.g. SMTP_PASSWORD",
    _ADDRESS: "must be an email address, e.g. ops@example.com",
}


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone (e.g. America/Caracas)") from None
    return value


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, e.g. https://hooks.example.com/T0/B0")
    return value


def _check_cron(value: str) -> str:
    try:
        validate_cron(value)
    except CronError as exc:
        raise ValueError(exc.reason) from None
    return value


class _Strict(BaseModel):
    """Unknown keys are refused. Flags and counts are ``Strict*``: TOML has real booleans and
    integers, so ``"yes"`` or ``"30"`` is a mistake to report, not a value to convert."""

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
    active: StrictBool = True
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
    weekdays: Annotated[list[Weekday], Field(min_length=1)] = Field(
        default_factory=lambda: list(WEEKDAYS)
    )


class ScheduleModel(_Strict):
    name: Annotated[str, Field(pattern=_ID)]
    job: Literal["inventory", "sales", "reconcile"]
    cron: str
    timezone: str = DEFAULT_TIMEZONE
    enabled: StrictBool = True
    locations: Annotated[list[str], Field(min_length=1)] | None = None
    active_hours: ActiveHoursModel | None = None
    retry_attempts: Annotated[StrictInt, Field(ge=0, le=185)] = 2
    max_event_age_seconds: Annotated[StrictInt, Field(ge=60, le=86400)] = 3600
    catch_up: Literal["latest", "all", "none"] = "latest"

    _zone = field_validator("timezone")(classmethod(lambda cls, v: _check_zone(v)))
    _cron = field_validator("cron")(classmethod(lambda cls, v: _check_cron(v)))


class AlertChannelModel(_Strict):
    kind: Literal["smtp", "webhook"]
    url: str | None = None
    host: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    sender: Annotated[str, Field(pattern=_ADDRESS)] | None = None
    recipients: list[Annotated[str, Field(pattern=_ADDRESS)]] = Field(default_factory=list)
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    username: str | None = None
    starttls: StrictBool = False

    _url = field_validator("url")(classmethod(lambda cls, v: _check_http_url(v)))


# The fields each kind of channel reads; any other is a mistake (e.g. a url on an smtp channel).
CHANNEL_FIELDS = {
    "webhook": ("url",),
    "smtp": ("host", "port", "sender", "recipients", "password_env", "username", "starttls"),
}
CHANNEL_REQUIRED = {"webhook": ("url",), "smtp": ("host", "sender", "recipients")}


class AlertsModel(_Strict):
    channels: list[AlertChannelModel] = Field(default_factory=list)
    gap_threshold_minutes: Annotated[StrictInt, Field(ge=1, le=7 * 24 * 60)] = 120
    rate_limit_per_hour: Annotated[StrictInt, Field(ge=1, le=3600)] = 30
    daily_digest: StrictBool = False
    deadman_url: str | None = None

    _url = field_validator("deadman_url")(classmethod(lambda cls, v: _check_http_url(v)))


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

    # Built once: every trigger looks its location up (``api.trigger``).
    _by_id: dict[str, Location] = field(init=False, repr=False, compare=False)
    _ids: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {loc.id: loc for loc in self.locations})
        object.__setattr__(self, "_ids", tuple(self._by_id))

    def location(self, location_id: str) -> Location:
        return self._by_id[location_id]

    @property
    def location_ids(self) -> tuple[str, ...]:
        return self._ids

    def knows(self, location_id: str) -> bool:
        return location_id in self._by_id


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
    """What one field cannot say alone: uniqueness, references, what a kind of thing needs."""
    _check_locations(model.locations, source)
    _check_schedules(model, source)
    _check_channels(model.alerts.channels, source)


def _check_locations(locations: list[LocationModel], source: str) -> None:
    seen: set[str] = set()
    owners: dict[tuple[str, str], str] = {}  # (warehouse or branch, code) -> its location
    for i, loc in enumerate(locations):
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
        _check_owned(owners, loc, key, source)


def _check_owned(
    owners: dict[tuple[str, str], str], loc: LocationModel, key: str, source: str
) -> None:
    """A KLK warehouse or branch belongs to one location: a second one would load it twice."""
    claims = [
        (f"{key}.warehouses[{j}].code", "warehouse", w.code) for j, w in enumerate(loc.warehouses)
    ]
    if loc.branch_code:
        claims.append((f"{key}.branch_code", "branch", loc.branch_code))
    for where, what, code in claims:
        owner = owners.get((what, code))
        if owner is not None:
            place = "this location" if owner == loc.id else f"location {owner}"
            raise ConfigError(source, where, code, f"this {what} is already listed by {place}")
        owners[(what, code)] = loc.id


def _check_schedules(model: FileModel, source: str) -> None:
    known = {loc.id: loc for loc in model.locations}
    names: set[str] = set()
    for i, sched in enumerate(model.schedules):
        if sched.name in names:
            raise ConfigError(source, f"schedules[{i}].name", sched.name, "names must be unique")
        names.add(sched.name)
        for loc_id in sched.locations or []:
            if loc_id not in known:
                raise ConfigError(
                    source,
                    f"schedules[{i}].locations",
                    loc_id,
                    f"unknown location; known: {', '.join(sorted(known))}",
                )
            if sched.job != "inventory" and known[loc_id].kind is not LocationKind.STORE:
                raise ConfigError(
                    source,
                    f"schedules[{i}].locations",
                    loc_id,
                    f"a {known[loc_id].kind.value} has no sales: a {sched.job} schedule skips it",
                )
        _check_active_hours(sched.active_hours, f"schedules[{i}].active_hours", source)


def _check_active_hours(hours: ActiveHoursModel | None, key: str, source: str) -> None:
    if hours is None:
        return
    if hours.start == hours.end:
        raise ConfigError(
            source, key, f"{hours.start}-{hours.end}", "starts and ends at the same minute"
        )
    try:
        ActiveHours(hours.start, hours.end, tuple(hours.weekdays))
    except BadInputError as exc:
        raise ConfigError(source, key, hours.weekdays, str(exc)) from None


def _check_channels(channels: list[AlertChannelModel], source: str) -> None:
    for i, channel in enumerate(channels):
        key = f"alerts.channels[{i}]"
        for name in CHANNEL_REQUIRED[channel.kind]:
            if not getattr(channel, name):
                raise ConfigError(
                    source, f"{key}.{name}", None, f"channels of kind {channel.kind} need {name}"
                )
        for name in channel.model_fields_set - {"kind", *CHANNEL_FIELDS[channel.kind]}:
            raise ConfigError(
                source,
                f"{key}.{name}",
                getattr(channel, name),
                f"channels of kind {channel.kind} have no {name}: remove it",
            )


def parse_config(data: dict[str, Any], source: str) -> ChainConfig:
    try:
        model = FileModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        fix = err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            fix = PATTERN_HINTS.get(str(err.get("ctx", {}).get("pattern")), fix)
        elif err["type"] in ("bool_type", "bool_parsing"):
            fix = "use true or false (unquoted)"
        elif err["type"] in ("int_type", "int_parsing"):
            fix = "use a whole number (unquoted)"
        elif err["type"] == "extra_forbidden":
            fix = "unknown key: remove it or check its spelling"
        value = err.get("input")
        if err["type"] == "missing":
            fix, value = "required key is missing", ConfigError.NO_VALUE
        raise ConfigError(source, _dotted(err["loc"]), value, fix) from None
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
        raise ConfigError(source, "TOML", ConfigError.NO_VALUE, f"not valid: {exc}") from None
    return parse_config(data, source)
