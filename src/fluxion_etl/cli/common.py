"""What CLI commands share: building the runtime from settings, and printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import typer

from fluxion_etl.config import ChainConfig, load_config
from fluxion_etl.domain.clock import Clock, clock_from_spec
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.errors import BadInputError, ConfigError
from fluxion_etl.settings import Settings, load_settings


def settings_and_config() -> tuple[Settings, ChainConfig]:
    settings = load_settings()
    return settings, load_config(settings.config)


def clock_from_env() -> Clock:
    """The clock ``FLUXION_CLOCK`` names (a seam of the demo and the tests; unset: the system's);
    a value it cannot read is a configuration error, not a traceback."""
    import os

    spec = os.environ.get("FLUXION_CLOCK")
    try:
        return clock_from_spec(spec)
    except (ValueError, OSError) as exc:
        raise ConfigError("environment", "FLUXION_CLOCK", spec, str(exc)) from None


@contextmanager
def open_runtime(*, check_schema: bool = True) -> Iterator[Runtime]:
    """Settings, configuration, database and KLK client for one command; closed afterwards."""

    from fluxion_etl.klk.client import KlkClient
    from fluxion_etl.logs import configure_logging
    from fluxion_etl.store.db import check_schema as check
    from fluxion_etl.store.db import create_db_engine

    settings, config = settings_and_config()
    configure_logging(settings.log_format, quiet=True)
    engine = create_db_engine(settings.database_url)
    klk = KlkClient.from_settings(settings)
    try:
        if check_schema:
            check(engine)
        clock = clock_from_env()
        yield Runtime(settings=settings, config=config, engine=engine, klk=klk, clock=clock)
    finally:
        klk.close()
        engine.dispose()


def parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInputError(flag, f"{value!r} is not a date: use YYYY-MM-DD") from None


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def print_table(table: Any) -> None:
    """A rich table, as wide as the terminal; piped or redirected, 200 columns (not 80), so that
    no time or id is cut."""
    from rich.console import Console

    Console(width=None if is_terminal() else 200).print(table)


def is_terminal() -> bool:
    return sys.stdout.isatty()
