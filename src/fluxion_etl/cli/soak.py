"""``fluxion-etl soak``: the fault-injection soak (docs/RELIABILITY.md)."""

from __future__ import annotations

from typing import Annotated

import typer

MODE_HELP = "short: 1 simulated day, 5 locations (CI); long: 30 days, 20 locations (releases)."


def register(app: typer.Typer) -> None:
    app.command("soak")(soak)


def soak(
    *,
    mode: Annotated[str, typer.Option(help=MODE_HELP)] = "short",
    seed: Annotated[int, typer.Option(help="Draws the fault plan; printed, so a run replays.")] = 1,
    speed: Annotated[
        float | None, typer.Option(min=1, help="Simulated seconds per real second.")
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, max=30, help="Days under faults.")] = None,
    locations: Annotated[
        int | None, typer.Option(min=2, max=200, help="Simulated locations.")
    ] = None,
    keep: Annotated[
        bool, typer.Option(help="Keep the work directory (logs) even on success.")
    ] = False,
) -> None:
    """Run the real service (two `serve` processes, subprocess launcher) on its own PostgreSQL
    cluster against the KLK simulator while faults are injected, then check that nothing was
    lost, duplicated or left stuck. Exits 1 naming each violated invariant."""
    from fluxion_etl.soak.modes import MODES
    from fluxion_etl.soak.runner import SoakOptions, run_soak

    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r}: use {' or '.join(MODES)}", param_hint="--mode")
    options = SoakOptions(
        mode=mode, seed=seed, speed=speed, days=days, locations=locations, keep=keep
    )
    raise typer.Exit(run_soak(options, say=typer.echo))


def standalone() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(soak)
    app()
