"""``fluxion-etl klk-sim``: flags checked up front, and the command serving in its own process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import typer
from typer.testing import CliRunner

from fluxion_etl.cli.sim import clock_from_flags, register
from fluxion_etl.domain.clock import ManualClock, ScaledClock, SystemClock
from fluxion_etl.sim.server import simulator_process


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Stand-in for the product's root command."""

    register(app)
    return app


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--skus", "0"], "--skus 0: use 1-80000"),
        (["--locations", "0"], "--locations 0: must be >= 1"),
        (["--port", "70000"], "--port 70000: use 0-65535"),
        (["--faults", "sales@*:explode"], "unknown kind"),
        (["--clock-speed", "0"], "--clock-speed 0"),
        (["--start", "tomorrow"], "--start 'tomorrow'"),
        (["--clock", "manual:2025-11-17T08:00", "--clock-speed", "60"], "cannot be combined"),
        (["--clock", "lunar"], "--clock 'lunar'"),
        (["--history-from", "17/11/2025"], "--history-from"),
        (["--cache-mb", "0"], "--cache-mb 0: must be >= 1"),
    ],
)
def test_bad_flags_are_one_line_errors_with_exit_2(args: list[str], complaint: str) -> None:
    result = CliRunner().invoke(cli(), ["klk-sim", *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert complaint in lines[0]


def test_clock_flags_choose_the_clock() -> None:
    scaled = clock_from_flags(None, 60, "2025-11-17T08:00")
    assert isinstance(scaled, ScaledClock)
    assert (scaled.start, scaled.speed) == (datetime(2025, 11, 17, 12, 0, tzinfo=UTC), 60)
    assert isinstance(clock_from_flags(None, None, None), SystemClock)
    now_scaled = clock_from_flags(None, 10, None)
    assert isinstance(now_scaled, ScaledClock)
    assert abs(now_scaled.start - datetime.now(UTC)) < timedelta(seconds=5)
    manual = clock_from_flags("manual:2025-11-17T08:00:00+00:00", None, None)
    assert isinstance(manual, ManualClock)
    assert manual.now() == datetime(2025, 11, 17, 8, 0, tzinfo=UTC)


def test_klk_sim_serves_in_its_own_process_on_a_shared_manual_clock() -> None:
    with (
        simulator_process(
            locations=3,
            skus=50,
            lines_per_day=40,
            faults="catalogue@tienda_02:http_503",
            clock="manual:2025-11-17T18:00:00-04:00",
        ) as sim,
        httpx.Client(base_url=sim.url, timeout=10) as http,
    ):
        info = http.get("/_sim/info").json()
        assert [loc["id"] for loc in info["locations"]] == [
            "tienda_01",
            "tienda_02",
            "tienda_03",
        ]
        assert info["now"] == "2025-11-17T22:00:00+00:00"
        body = {"sucursal": "SUC001", "fecha_desde": "2025-11-17", "fecha_hasta": "2025-11-17"}
        assert http.post("/ventas", json=body).json()["ventas"]
        blocked = http.post("/maestra/articulos/almacen", json={"Codigoalmacen": "TAVBOL"})
        assert blocked.status_code == 503
        http.post("/_sim/clock", json={"advance_seconds": 3600})
        assert http.get("/_sim/clock").json()["now"] == "2025-11-17T23:00:00+00:00"
    assert sim.process.returncode is not None
