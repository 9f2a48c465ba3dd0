"""Helpers the simulator tests share (imported by name; conftest.py holds the fixtures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.world import SimWorld

CARACAS = ZoneInfo("America/Caracas")
MONDAY_EVENING = datetime(2025, 11, 17, 19, 0, tzinfo=CARACAS)
"""Monday 2025-11-17 19:00 Caracas: the day's stores have sold most of their lines."""
DAY = "2025-11-17"


def small_world(clock: ManualClock, *, seed: int = 1, locations: int = 22) -> SimWorld:
    return SimWorld(locations=locations, skus=400, lines_per_day=150, seed=seed, clock=clock)


def ventas(http: httpx.Client, sucursal: str, day: str = DAY, **extra: Any) -> httpx.Response:
    """POST /ventas for one day (``extra`` adds almacen, hora_desde, CodArticulo, to=...)."""
    body = {"sucursal": sucursal, "fecha_desde": day, "fecha_hasta": extra.pop("to", day)} | extra
    return http.post("/ventas", json=body)
