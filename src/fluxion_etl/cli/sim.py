"""``fluxion-etl klk-sim``: serve the KLK simulator (SPEC §5) on HTTP until interrupted."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from fluxion_etl.cli.main import fail
from fluxion_etl.domain.clock import Clock, ManualClock, ScaledClock, SystemClock, clock_from_spec
from fluxion_etl.sim.faults import FaultPlan, FaultSyntaxError
from fluxion_etl.sim.world import MAX_SKUS, SimWorld

CARACAS = ZoneInfo("America/Caracas")

FAULTS_HELP = (
    "Faults to inject, ';'-separated: CALL@LOCATION:KIND[=VALUE][:p=P][:n=N][:from=ISO]"
    "[:until=ISO][:msg=TEXT]; e.g. 'sales@tienda_03:http_503;*@*:latency=0.2:p=0.1'. "
    "Kinds: latency, hang, http_500, http_503, error_body, truncated_json, count_mismatch, "
    "duplicate_lines, void_lines, empty_sales. Change them at run time via /_sim/faults."
)


def register(app: typer.Typer) -> None:
    app.command("klk-sim")(klk_sim)


def klk_sim(
    *,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port; the URL is printed).")] = 7002,
    locations: Annotated[
        int, typer.Option(help="Locations; the first 20 are the real chain.")
    ] = 20,
    skus: Annotated[int, typer.Option(help="Articles per warehouse.")] = 4000,
    lines_per_day: Annotated[
        int, typer.Option(help="Average sales lines per store and day.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed + same simulated time = same bytes.")] = 1,
    faults: Annotated[str | None, typer.Option(help=FAULTS_HELP)] = None,
    clock_speed: Annotated[
        float | None, typer.Option(help="Simulated seconds per real second (a scaled clock).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Simulated start instant, ISO (no offset = Caracas).")
    ] = None,
    clock: Annotated[
        str | None,
        typer.Option(help="Clock spec shared with other processes: system, manual:ISO, scaled:..."),
    ] = None,
    history_from: Annotated[
        str | None, typer.Option(help="First local day with sales, YYYY-MM-DD (default: none).")
    ] = None,
    cache_mb: Annotated[
        int | None,
        typer.Option(help="Memory for generated sales days (default: two days of every store)."),
    ] = None,
) -> None:
    """Serve a simulated KLK API with deterministic data for any number of locations."""
    from fluxion_etl.sim.server import serve  # uvicorn is needed by this command only

    _check_scale(port, locations, skus, lines_per_day, cache_mb)
    sim_clock = clock_from_flags(clock, clock_speed, start)
    plan = _faults(faults, seed)
    first_day = _day(history_from)
    world = SimWorld(
        locations=locations, skus=skus, lines_per_day=lines_per_day, seed=seed,
        clock=sim_clock, start=first_day, day_cache_mb=cache_mb,
    )  # fmt: skip
    try:
        serve(world, plan, host=host, port=port, announce=typer.echo)
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _fail(message: str) -> typer.Exit:
    return fail(message)


def _check_scale(port: int, locations: int, skus: int, lines: int, cache_mb: int | None) -> None:
    checks = (
        ("--port", port, 0 <= port <= 65535, "use 0-65535"),
        ("--locations", locations, locations >= 1, "must be >= 1"),
        ("--skus", skus, 1 <= skus <= MAX_SKUS, f"use 1-{MAX_SKUS}"),
        ("--lines-per-day", lines, lines >= 0, "must be >= 0"),
        ("--cache-mb", cache_mb, cache_mb is None or cache_mb >= 1, "must be >= 1"),
    )
    for flag, value, ok, fix in checks:
        if not ok:
            raise _fail(f"{flag} {value}: {fix}")


def clock_from_flags(spec: str | None, speed: float | None, start: str | None) -> Clock:
    """``--clock`` alone, or a scaled clock from ``--clock-speed``/``--start``, or the system's."""
    if spec is not None and (speed is not None or start is not None):
        raise _fail("--clock cannot be combined with --clock-speed or --start")
    if spec is not None:
        return _clock_spec(spec)
    if speed is not None and speed <= 0:
        raise _fail(f"--clock-speed {speed}: must be > 0")
    if speed is None and start is None:
        return SystemClock()
    return ScaledClock(_instant(start, "--start") if start else datetime.now(UTC), speed or 1.0)


def _clock_spec(spec: str) -> Clock:
    if spec.startswith("manual:"):
        return ManualClock(_instant(spec.removeprefix("manual:"), "--clock manual:"))
    try:
        return clock_from_spec(spec)
    except ValueError as exc:
        raise _fail(f"--clock {spec!r}: {exc}; or manual:ISO") from None


def _instant(text: str, flag: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{flag} {text!r} is not an ISO date-time (e.g. 2025-11-17T08:00)") from None
    return when.replace(tzinfo=CARACAS) if when.tzinfo is None else when


def _faults(text: str | None, seed: int) -> FaultPlan:
    try:
        return FaultPlan(text or "", seed=seed)
    except FaultSyntaxError as exc:
        raise _fail(f"--faults: {exc}") from None


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _fail(f"--history-from {text!r}: use YYYY-MM-DD") from None


def standalone() -> None:
    """``python -m fluxion_etl.sim``: the same command without the rest of the CLI."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(klk_sim)
    app()
