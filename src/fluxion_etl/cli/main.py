"""Entry point: builds the Typer app from the command modules and maps errors to exit codes.

Exit codes: 0 success; 1 a run ended partial or failed; 2 bad input or configuration.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Sequence

import typer

from fluxion_etl.errors import BadInputError, ConfigError, FluxionError, SchemaNotReadyError

COMMAND_MODULES = ("sim", "db", "run", "service", "schedules", "ops", "gaps", "aws", "soak")

MODULES_OF_COMMAND: dict[str, tuple[str, ...]] = {
    "version": (),
    "klk-sim": ("sim",),
    "db": ("db",),
    "run": ("run",),
    "runs": ("run", "ops"),  # ops adds ``runs logs`` and ``runs cancel``
    "locations": ("run",),
    "worker": ("service",),
    "serve": ("service",),
    "demo": ("service",),
    "schedules": ("schedules",),
    "fires": ("schedules",),
    "export": ("schedules",),
    "token": ("ops",),
    "freshness": ("ops",),
    "gaps": ("gaps",),
    "alerts": ("gaps",),
    "cost": ("aws",),
    "soak": ("soak",),
}
"""The command modules each top-level command needs; ``main`` imports only those. A ``worker``
process (a burst of API calls starts several at once, on the cores that answer the calls) needs
only ``service``: importing every module too cost it about 0.13 s more CPU, mostly the KLK
simulator's (``klk-sim`` needs it). tests/cli/test_worker_startup.py keeps this table true."""

_registered: list[str] = []  # the modules added to ``app`` in this process, in order

app = typer.Typer(
    name="fluxion-etl",
    help="Keeps inventory and sales of every store fresh from KLK.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root() -> None:
    # A Typer app of one command runs that command as the root; ``version`` may be all ``main``
    # registers, and must still be a command of the group.
    pass


@app.command()
def version() -> None:
    """Print the installed version."""
    from fluxion_etl import __version__

    typer.echo(__version__)


def _register(names: Sequence[str] = COMMAND_MODULES) -> None:
    """Add the command modules ``names`` to ``app``, each once however often ``main`` runs in one
    process."""
    for name in COMMAND_MODULES:
        if name not in names or name in _registered:
            continue
        _registered.append(name)
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


def modules_for(args: Sequence[str]) -> tuple[str, ...]:
    """The modules that register the command ``args`` names; every module when it names none (no
    arguments, the root's ``--help``, an unknown command), so that the root's help and its
    errors list every command. The root takes no option but ``--help``, so a command's name
    can only be the first argument."""
    if not args:
        return COMMAND_MODULES
    return MODULES_OF_COMMAND.get(args[0], COMMAND_MODULES)


def _register_frozen(names: Sequence[str]) -> None:
    """``_register`` with the collector paused, then its objects frozen (``gc.freeze``).

    The imports make some 150,000 objects that live as long as the process (modules, classes,
    functions) and almost no garbage. Collected as usual, they set off collections that walk
    them again and again, and the interpreter's last collection at exit walks them all once more:
    about 0.2 s of CPU in a ``worker`` process that executed a small run (0.84 against 0.63 s).
    Frozen, no collection walks them; what the command makes afterwards is collected as usual.
    ``serve`` freezes once more before it starts its threads (``cli.service.start_frozen``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        _register(names)
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def main() -> None:
    _register_frozen(modules_for(sys.argv[1:]))
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
    except Exception as exc:
        message = database_error(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)


def database_error(exc: BaseException) -> str | None:
    """One line for a database that cannot be used as configured (a wrong URL, a database or
    directory that does not exist, a server that is down), naming the URL without its password;
    None for any other exception (a bug keeps its traceback)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return None
    # Connecting failed (no statement was sent), or the URL could not be used at all; an error
    # of a statement (a timeout, a lock, a constraint) is not the URL's fault and keeps its
    # traceback.
    connecting = isinstance(exc, sa_exc.DBAPIError) and exc.statement is None
    if not (connecting or isinstance(exc, sa_exc.ArgumentError | sa_exc.NoSuchModuleError)):
        return None
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    return (
        f"cannot use the database {_configured_database()}: {reason} "
        "(check FLUXION_DATABASE_URL: host, port, database name and options; the database, "
        "or a SQLite file's directory, must exist)"
    )


def _configured_database() -> str:
    import os

    from sqlalchemy.engine import make_url

    url = os.environ.get("FLUXION_DATABASE_URL", "sqlite:///fluxion.db")
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "given"
