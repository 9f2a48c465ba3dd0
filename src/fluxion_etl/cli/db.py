"""``db`` commands: bring the schema up to date and show where it stands."""

from __future__ import annotations

import typer

from fluxion_etl.errors import BadInputError
from fluxion_etl.settings import load_settings
from fluxion_etl.store.db import (
    create_db_engine,
    current_revision,
    head_revision,
    revisions,
    upgrade,
)

db_app = typer.Typer(help="The database schema (Alembic migrations shipped with the package).")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target revision; the newest by default."),
) -> None:
    """Create or migrate the schema of FLUXION_DATABASE_URL; safe to run from several processes."""
    shipped = revisions()
    if revision != "head" and revision not in shipped:
        raise BadInputError(
            "revision", f"unknown revision {revision!r}; give one of {', '.join(shipped)} or head"
        )
    engine = create_db_engine(load_settings().database_url, pool_size=1)
    try:
        before = current_revision(engine)
        if (
            before in shipped
            and revision in shipped
            and shipped.index(revision) < shipped.index(before)
        ):
            raise BadInputError(
                "revision",
                f"the schema is at {before}, past {revision}: upgrade only moves forward",
            )
        upgrade(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"schema already at {after}")
    else:
        typer.echo(f"schema upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def current_command() -> None:
    """Print the schema revision of the database and the one this code needs."""
    engine = create_db_engine(load_settings().database_url, pool_size=1)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if current == head else "needs `fluxion-etl db upgrade`"
    typer.echo(f"current: {current or 'none (empty database)'}")
    typer.echo(f"head:    {head}")
    typer.echo(f"status:  {state}")
