"""Entry point: builds the Typer app from the command modules and maps errors to exit codes.

Exit codes: 0 success; 1 a run ended partial or failed; 2 bad input or configuration.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache

import typer

from fluxion_etl.errors import BadInputError, ConfigError, FluxionError, SchemaNotReadyError

COMMAND_MODULES = ("sim", "db", "run", "service", "schedules", "ops", "gaps", "aws", "soak")

app = typer.Typer(
    name="fluxion-etl",
    help="Keeps inventory and sales of every store fresh from KLK.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the installed version."""
    from fluxion_etl import __version__

    typer.echo(__version__)


@cache
def _register() -> None:
    """Add the command modules to ``app``, once however often ``main`` runs in one process."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"fluxion_etl.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fluxion_etl.cli.{name}":
                continue
            raise
        module.register(app)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def main() -> None:
    _register()
    try:
        app(standalone_mode=True)
    except (ConfigError, BadInputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SchemaNotReadyError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FluxionError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
