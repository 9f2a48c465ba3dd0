"""Configuration with every field wrong: the TOML file (locations, warehouses, opening hours,
schedules, alerts) and every ``FLUXION_*`` setting. Each mistake is a ``ConfigError`` whose one
line names the file (or the environment), the key and what to write instead; through the CLI it
is exit 2 with that one line and no traceback; a secret's value is never shown.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxion_etl.cli.common import settings_and_config
from fluxion_etl.cli.main import main
from fluxion_etl.config import load_config
from fluxion_etl.errors import ConfigError
from fluxion_etl.settings import Settings


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()  # a case's value that removes the key

GOOD: dict[str, Any] = {
    "locations": [
        {
            "id": "tienda_01",
            "name": "PERIFERICO",
            "kind": "store",
            "branch_code": "SUC001",
            "timezone": "America/Caracas",
            "region": "Carabobo",
            "active": True,
            "warehouses": [{"code": "APP-TPF", "role": "sales_floor", "name": "PISO"}],
            "opening_hours": {"default": "07:00-21:00", "sun": "closed"},
        },
        {
            "id": "tienda_02",
            "name": "AV. BOLIVAR",
            "branch_code": "SUC007",
            "warehouses": [{"code": "TAVBOL", "role": "sales_floor"}],
        },
        {
            "id": "cedi",
            "name": "CEDI",
            "kind": "distribution_centre",
            "warehouses": [{"code": "PCDICS", "role": "principal"}],
        },
    ],
    "schedules": [
        {
            "name": "sales",
            "job": "sales",
            "cron": "5,35 * * * *",
            "timezone": "America/Caracas",
            "enabled": True,
            "locations": ["tienda_01"],
            "active_hours": {"start": "07:00", "end": "21:00", "weekdays": ["mon", "tue"]},
            "retry_attempts": 2,
            "max_event_age_seconds": 3600,
            "catch_up": "latest",
        },
        {"name": "inventory", "job": "inventory", "cron": "0,30 * * * *"},
    ],
    "alerts": {
        "gap_threshold_minutes": 120,
        "rate_limit_per_hour": 30,
        "daily_digest": True,
        "deadman_url": "https://hc-ping.com/abc",
        "channels": [
            {
                "kind": "smtp",
                "host": "smtp.example.com",
                "port": 587,
                "sender": "fluxion@example.com",
                "recipients": ["ops@example.com"],
                "username": "fluxion",
                "password_env": "SMTP_PASSWORD",
                "starttls": True,
            },
            {"kind": "webhook", "url": "https://hooks.example.com/T0/B0/x"},
        ],
    },
}

# (path to the key, wrong value, the key the error names, a piece of what it says to do)
CASES: list[tuple[tuple[Any, ...], Any, str, str]] = [
    # locations
    (("locations",), [], "locations", "at least 1"),
    (("locations",), "tienda_01", "locations", "valid list"),
    (("locations", 0, "id"), "Tienda 01", "locations[0].id", "lower-case letters"),
    (("locations", 0, "id"), 7, "locations[0].id", "valid string"),
    (("locations", 0, "id"), DELETE, "locations[0].id", "required key is missing"),
    (("locations", 1, "id"), "tienda_01", "locations[1].id", "must be unique"),
    (("locations", 0, "name"), "", "locations[0].name", "at least 1 character"),
    (("locations", 0, "kind"), "warehouse", "locations[0].kind", "'distribution_centre'"),
    (("locations", 0, "branch_code"), DELETE, "locations[0].branch_code", "KLK branch code"),
    (("locations", 0, "branch_code"), 1, "locations[0].branch_code", "valid string"),
    (("locations", 1, "branch_code"), "SUC001", "locations[1].branch_code", "location tienda_01"),
    (("locations", 0, "timezone"), "Mars/Olympus", "locations[0].timezone", "IANA time zone"),
    (("locations", 0, "timezone"), "", "locations[0].timezone", "IANA time zone"),
    (("locations", 0, "active"), "yes", "locations[0].active", "true or false"),
    (("locations", 0, "region"), 5, "locations[0].region", "valid string"),
    (("locations", 0, "colour"), "red", "locations[0].colour", "unknown key"),
    # warehouses
    (("locations", 0, "warehouses"), [], "locations[0].warehouses", "at least 1"),
    (("locations", 0, "warehouses", 0, "code"), "", "locations[0].warehouses[0].code", "at least"),
    (("locations", 0, "warehouses", 0, "code"), "X" * 33, "locations[0].warehouses[0].code", "32"),
    (("locations", 0, "warehouses", 0, "role"), "floor", "locations[0].warehouses[0].role", "'"),
    (("locations", 0, "warehouses", 0, "size"), 3, "locations[0].warehouses[0].size", "unknown"),
    (
        ("locations", 0, "warehouses", 0, "role"),
        "principal",
        "locations[0].warehouses",
        'role = "sales_floor"',
    ),
    (
        ("locations", 0, "warehouses", 1),
        {"code": "APP-P", "role": "sales_floor"},
        "locations[0].warehouses",
        "only one sales_floor",
    ),
    (
        ("locations", 0, "warehouses", 1),
        {"code": "APP-TPF", "role": "principal"},
        "locations[0].warehouses[1].code",
        "already listed by this location",
    ),
    (
        ("locations", 2, "warehouses", 0, "code"),
        "TAVBOL",
        "locations[2].warehouses[0].code",
        "already listed by location tienda_02",
    ),
    # opening hours
    (("locations", 0, "opening_hours"), {"default": "9-5"}, "opening_hours", "HH:MM-HH:MM"),
    (("locations", 0, "opening_hours"), {"funday": "07:00-21:00"}, "opening_hours", "mon..sun"),
    (("locations", 0, "opening_hours"), {"mon": "21:00-07:00"}, "opening_hours", "24:00"),
    (("locations", 0, "opening_hours"), {"mon": "25:00-26:00"}, "opening_hours", "impossible"),
    (("locations", 0, "opening_hours"), {"mon": 7}, "opening_hours.mon", "valid string"),
    (("locations", 0, "opening_hours"), "07:00-21:00", "opening_hours", "valid dictionary"),
    # schedules
    (("schedules",), {"name": "x"}, "schedules", "valid list"),
    (("schedules", 0, "name"), "Sales Hourly", "schedules[0].name", "lower-case letters"),
    (("schedules", 1, "name"), "sales", "schedules[1].name", "must be unique"),
    (("schedules", 0, "job"), "payroll", "schedules[0].job", "'inventory'"),
    (("schedules", 0, "job"), DELETE, "schedules[0].job", "required key is missing"),
    (("schedules", 0, "cron"), "99 * * * *", "schedules[0].cron", "out of range"),
    (("schedules", 0, "cron"), "0 0 * * * *", "schedules[0].cron", "6 fields"),
    (("schedules", 0, "cron"), "@daily", "schedules[0].cron", "aliases"),
    (("schedules", 0, "cron"), "* * *", "schedules[0].cron", "has 3 fields"),
    (("schedules", 0, "cron"), "0 0 31 2 *", "schedules[0].cron", "never fires"),
    (("schedules", 0, "cron"), 5, "schedules[0].cron", "valid string"),
    (("schedules", 0, "timezone"), "Nowhere/X", "schedules[0].timezone", "IANA time zone"),
    (("schedules", 0, "enabled"), "no", "schedules[0].enabled", "true or false"),
    (("schedules", 0, "locations"), ["tienda_99"], "schedules[0].locations", "unknown location"),
    (("schedules", 0, "locations"), ["cedi"], "schedules[0].locations", "has no sales"),
    (("schedules", 0, "locations"), [], "schedules[0].locations", "at least 1"),
    (("schedules", 0, "active_hours", "start"), "25:00", "active_hours.start", "hour value"),
    (("schedules", 0, "active_hours", "end"), "07:00", "active_hours", "same minute"),
    (("schedules", 0, "active_hours", "weekdays"), ["funday"], "weekdays[0]", "'mon'"),
    (("schedules", 0, "active_hours", "weekdays"), [], "active_hours.weekdays", "at least 1"),
    (("schedules", 0, "retry_attempts"), -1, "schedules[0].retry_attempts", "greater than"),
    (("schedules", 0, "retry_attempts"), "2", "schedules[0].retry_attempts", "whole number"),
    (("schedules", 0, "retry_attempts"), 2.5, "schedules[0].retry_attempts", "whole number"),
    (("schedules", 0, "max_event_age_seconds"), 10, "max_event_age_seconds", "greater than"),
    (("schedules", 0, "catch_up"), "sometimes", "schedules[0].catch_up", "'latest'"),
    (("schedules", 0, "every"), "30m", "schedules[0].every", "unknown key"),
    # alerts
    (("alerts", "gap_threshold_minutes"), 0, "alerts.gap_threshold_minutes", "greater than"),
    (("alerts", "rate_limit_per_hour"), -5, "alerts.rate_limit_per_hour", "greater than"),
    (("alerts", "rate_limit_per_hour"), "30", "alerts.rate_limit_per_hour", "whole number"),
    (("alerts", "daily_digest"), "yes", "alerts.daily_digest", "true or false"),
    (("alerts", "deadman_url"), "hc-ping.com/abc", "alerts.deadman_url", "http(s) URL"),
    (("alerts", "email"), "ops@example.com", "alerts.email", "unknown key"),
    (("alerts", "channels", 0, "kind"), "pager", "alerts.channels[0].kind", "'smtp'"),
    (("alerts", "channels", 0, "host"), DELETE, "alerts.channels[0].host", "need host"),
    (("alerts", "channels", 0, "sender"), "fluxion", "alerts.channels[0].sender", "email"),
    (("alerts", "channels", 0, "recipients"), [], "channels[0].recipients", "need recipients"),
    (("alerts", "channels", 0, "recipients"), ["ops"], "channels[0].recipients[0]", "email"),
    (("alerts", "channels", 0, "port"), 70000, "alerts.channels[0].port", "65535"),
    (("alerts", "channels", 0, "port"), "25", "alerts.channels[0].port", "whole number"),
    (("alerts", "channels", 0, "password_env"), "a b", "channels[0].password_env", "environment"),
    (("alerts", "channels", 0, "starttls"), "yes", "alerts.channels[0].starttls", "true or false"),
    (("alerts", "channels", 0, "url"), "https://x.example", "channels[0].url", "have no url"),
    (("alerts", "channels", 1, "url"), "ftp://x", "alerts.channels[1].url", "http(s) URL"),
    (("alerts", "channels", 1, "url"), DELETE, "alerts.channels[1].url", "need url"),
    (("alerts", "channels", 1, "host"), "smtp", "alerts.channels[1].host", "have no host"),
    # the file itself
    (("stores",), [], "stores", "unknown key"),
]


def to_toml(document: dict[str, Any]) -> str:
    """A TOML file of ``document``: one ``key = inline value`` line per top-level key."""
    return "".join(f"{key} = {_toml_value(value)}\n" for key, value in document.items())


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"


def mistaken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``GOOD`` with one key set to ``value`` (or removed, or appended to a list)."""
    document = copy.deepcopy(GOOD)
    holder: Any = document
    for step in path[:-1]:
        holder = holder[step]
    last = path[-1]
    if value is DELETE:
        del holder[last]
    elif isinstance(holder, list) and last == len(holder):
        holder.append(value)
    else:
        holder[last] = value
    return document


def written(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(document if isinstance(document, str) else to_toml(document), "utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def assert_one_line_naming(error: ConfigError, source: Path | str, key: str, fix: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{source}: "), message
    assert key in error.key, message
    if error.value is ConfigError.NO_VALUE:  # a missing key, a syntax error: nothing to show
        assert f": {error.key}: {error.fix}" in message
    else:
        assert f": {error.key} = " in message
    assert fix in error.fix, message


def test_the_good_file_loads(tmp_path: Path) -> None:
    config = load_config(written(tmp_path, GOOD))

    assert config.location_ids == ("tienda_01", "tienda_02", "cedi")
    assert [s.name for s in config.schedules] == ["sales", "inventory"]
    assert len(config.alerts.channels) == 2


@pytest.mark.parametrize(
    ("path", "value", "key", "fix"),
    [pytest.param(*case, id=f"{case[2]}={case[1]!r:.30}") for case in CASES],
)
def test_every_wrong_field_is_refused_naming_the_file_the_key_and_the_fix(
    tmp_path: Path, path: tuple[Any, ...], value: Any, key: str, fix: str
) -> None:
    file = written(tmp_path, mistaken(path, value))

    assert_one_line_naming(config_error(file), file, key, fix)


def test_every_key_of_the_file_has_a_wrong_value_in_the_table() -> None:
    def keys(value: Any, prefix: str = "") -> set[str]:
        if isinstance(value, dict):
            return {k for key, v in value.items() for k in keys(v, f"{prefix}.{key}")} | {prefix}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return {k for item in value for k in keys(item, prefix)}
        return {prefix}

    tested = {".".join(str(p) for p in path if not isinstance(p, int)) for path, *_ in CASES}
    assert keys(GOOD) - {""} - {f".{k}" for k in tested} <= {
        ".alerts",  # tables: their keys are tested
        ".alerts.channels",
        ".schedules.active_hours",
        ".locations.warehouses.name",  # free text
        ".locations.opening_hours.default",  # as opening_hours.mon
        ".locations.opening_hours.sun",
        ".alerts.channels.username",  # free text
    }


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ("locations = [", "TOML", "not valid: "),
        ("", "locations", "required key is missing"),
        ('[[locations]]\nid = "a"\nid = "b"\n', "TOML", "not valid: "),
    ],
)
def test_a_file_that_is_not_toml_is_refused(tmp_path: Path, text: str, key: str, fix: str) -> None:
    file = written(tmp_path, text)

    assert_one_line_naming(config_error(file), file, key, fix)


def test_a_missing_unreadable_or_binary_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "latin1.toml"
    binary.write_bytes(b'name = "MA\xd1ONGO"\n')

    for path, fix in [
        (tmp_path / "missing.toml", "file not found"),
        (tmp_path, "cannot read"),
        (binary, "cannot read"),
    ]:
        assert_one_line_naming(config_error(path), path, "FLUXION_CONFIG", fix)


# --- the environment -------------------------------------------------------------------------

DB_PASSWORD = "Pg-Pa55word-never-shown"
# Every setting with values it refuses (the test below checks no setting is left out).
WRONG_SETTINGS: dict[str, list[str]] = {
    "database_url": [
        f"mysql://fluxion:{DB_PASSWORD}@db/fluxion",
        f"postgresql://fluxion:{DB_PASSWORD}@db:99999/fluxion",
        "sqlite://fluxion.db",
    ],
    "klk_base_url": ["ftp://klk", "http://", "http://klk:99999", "7002"],
    "config": ["/nonexistent/chain.toml"],
    "klk_connect_timeout": ["0", "-1", "inf", "abc"],
    "klk_catalogue_read_timeout": ["0", "nan"],
    "klk_sales_read_timeout": ["-600"],
    "klk_retry_attempts": ["0", "11", "1.5"],
    "klk_retry_initial_wait": ["-1"],
    "klk_retry_max_wait": ["-0.5"],
    "concurrency": ["0", "65", "three"],
    "lease_ttl_seconds": ["0"],
    "heartbeat_seconds": ["0", "600"],
    "inventory_deadline_seconds": ["-5"],
    "sales_deadline_seconds": ["0"],
    "reconcile_deadline_seconds": ["an hour"],
    "sales_overlap_minutes": ["-1"],
    "max_range_days": ["0"],
    "reconcile_days": ["0"],
    "mass_deletion_threshold": ["1.5", "-0.1", "5%"],
    "history_retention_days": ["0"],
    "raw_payload_retention_days": ["0"],
    "raw_payload_max_bytes": ["100"],
    "run_log_max_lines": ["5"],
    "circuit_failure_threshold": ["0"],
    "circuit_reset_seconds": ["0"],
    "circuit_reset_max_seconds": ["0", "soon"],
    "gap_days": ["0", "93"],
    "auto_recover": ["maybe"],
    "auto_recover_max_in_flight": ["0", "17"],
    "auto_recover_cooldown_minutes": ["0"],
    "alerts_interval_seconds": ["0"],
    "run_log_retention_days": ["0"],
    "metrics_token": ["", "short-token"],
    "launcher": ["lambda"],
    "subprocess_worker_nice": ["-1", "20", "low"],
    "pool_workers": ["0", "33", "two"],
    "scheduler": ["cron"],
    "log_format": ["xml"],
    "session_secret": ["", "too-short"],
    "session_hours": ["0", "721"],
    "ecs_cluster": ["", "my cluster"],
    "ecs_task_definition": ["", "fluxion worker"],
    "ecs_subnets": ["subnet-0abc,sub 2"],
    "ecs_security_groups": ["default"],
    "ecs_container_name": ["a worker"],
    "ecs_assign_public_ip": ["perhaps"],
    "ecs_region": ["Mars"],
}
SETTING_CASES = [
    pytest.param(name, value, id=f"FLUXION_{name.upper()}={value!r:.20}")
    for name, values in WRONG_SETTINGS.items()
    for value in values
]
SECRET_VALUES = (DB_PASSWORD, "short-token", "too-short")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"FLUXION_{name.upper()}", raising=False)
    monkeypatch.delenv("FLUXION_CLOCK", raising=False)
    return monkeypatch


def test_every_setting_has_wrong_values_in_the_table() -> None:
    assert set(WRONG_SETTINGS) == set(Settings.model_fields)


@pytest.mark.parametrize(("name", "value"), SETTING_CASES)
def test_every_wrong_setting_is_refused_naming_it_and_never_showing_a_secret(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    key = f"FLUXION_{name.upper()}"
    clean_env.setenv(key, value)

    with pytest.raises(ConfigError) as caught:
        settings_and_config()

    message = str(caught.value)
    assert caught.value.key == key
    assert "\n" not in message
    assert message.startswith(("environment: ", f"{value}: "))
    assert not any(secret in message for secret in SECRET_VALUES), message


# --- through the CLI: exit 2, one line -----------------------------------------------------------


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str, str]:
    """``fluxion-etl ARGS`` in this process, through the real entry point and its error mapping."""
    monkeypatch.setattr(sys, "argv", ["fluxion-etl", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.mark.parametrize(
    ("path", "value", "key", "fix"),
    [pytest.param(*case, id=f"{case[2]}={case[1]!r:.30}") for case in CASES[::4]],
)
def test_the_cli_exits_2_with_one_line_for_a_wrong_file(
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: Any,
    path: tuple[Any, ...],
    value: Any,
    key: str,
    fix: str,
) -> None:
    file = written(tmp_path, mistaken(path, value))
    clean_env.setenv("FLUXION_CONFIG", str(file))

    code, out, err = run_cli(clean_env, capsys, "locations", "list")

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {file}: ")
    assert key in err
    assert fix in err


@pytest.mark.parametrize(("name", "value"), SETTING_CASES[::3])
def test_the_cli_exits_2_with_one_line_for_a_wrong_setting(
    clean_env: pytest.MonkeyPatch, capsys: Any, name: str, value: str
) -> None:
    clean_env.setenv(f"FLUXION_{name.upper()}", value)

    code, out, err = run_cli(clean_env, capsys, "locations", "list")

    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert f"FLUXION_{name.upper()}" in err
    assert not any(secret in err for secret in SECRET_VALUES)


@pytest.mark.parametrize("clock", ["garbage", "scaled:yesterday@0x1", "file:fast:/nowhere"])
def test_a_wrong_clock_seam_is_exit_2_with_one_line(
    clean_env: pytest.MonkeyPatch, capsys: Any, clock: str
) -> None:
    clean_env.setenv("FLUXION_CLOCK", clock)

    code, _, err = run_cli(clean_env, capsys, "cost")

    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: environment: FLUXION_CLOCK = ")


def test_the_installed_command_says_it_the_same_way(tmp_path: Path) -> None:
    """One real process, as an operator runs it: exit 2, one line, no traceback."""
    file = written(tmp_path, mistaken(("schedules", 0, "cron"), "99 * * * *"))
    env = {"PATH": "/usr/bin:/bin", "FLUXION_CONFIG": str(file)}
    command = [str(Path(sys.executable).with_name("fluxion-etl")), "locations", "list"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {file}: schedules[0].cron = '99 * * * *': [99 * * * *] is not acceptable, "
        "out of range; use five fields: minute hour day-of-month month day-of-week, "
        "e.g. '0,30 * * * *'"
    ]
