"""The simulator's ASGI app: KLK's five calls (SPEC §3), faults around them, ``/_sim`` beside them.

KLK's routes answer as KLK does; nothing in them tells a client it talks to a simulator.
Decisions where KLK's behaviour is unknown, documented once here:

- an unknown ``sucursal`` on ``/ventas`` or ``/maestra/articulos/reposicion`` answers HTTP 200
  ``{"error": "..."}`` (a misconfigured branch must fail loudly, not look like a quiet store);
  unknown warehouse or article codes give empty lists, as KLK does;
- several warehouses in one catalogue call give one row per article with the stock summed;
- a body KLK could not read (bad JSON, missing ``fecha_desde``…) answers HTTP 400 ``{"error"}``;
- the distribution centre's warehouses are listed under branch ``SUC000``, which has no sales.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from fluxion_etl.domain.records import WarehouseRole
from fluxion_etl.sim.control import control_routes
from fluxion_etl.sim.faults import Call, Fault, FaultKind, FaultPlan, Selection
from fluxion_etl.sim.payloads import (
    catalogue_body,
    catalogue_envelope,
    how_many,
    list_body,
    sales_body,
    shape,
    truncate,
)
from fluxion_etl.sim.queries import QueryError, SalesRequest, codes, sales_request
from fluxion_etl.sim.sales import SoldLine
from fluxion_etl.sim.world import SimWorld

JSON = "application/json"
Produce = Callable[[datetime, Selection], bytes]


def create_app(world: SimWorld, faults: FaultPlan | None = None) -> Starlette:
    """The simulator for ``world``; ``app.state.stopping`` (a threading.Event) ends hangs early."""
    sim = KlkSimulator(world, faults or FaultPlan(seed=world.seed))
    routes = [
        Route("/maestra/almacenes/Reposicion", sim.replenishment_warehouses, methods=["GET"]),
        Route("/maestra/almacenes/pisoventa", sim.floor_warehouses, methods=["GET"]),
        Route("/maestra/articulos/almacen", sim.warehouse_catalogue, methods=["POST"]),
        Route("/maestra/articulos/reposicion", sim.branch_catalogue, methods=["POST"]),
        Route("/ventas", sim.sales, methods=["POST"]),
        Mount("/_sim", routes=control_routes(world, sim.plan)),
    ]
    app = Starlette(routes=routes)
    app.state.world, app.state.faults, app.state.stopping = world, sim.plan, sim.stopping
    return app


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _error(message: str, status: int = 200) -> Response:
    return _json(orjson.dumps({"error": message}), status)


class KlkSimulator:
    """Handlers of KLK's routes; each names its call and targets, then hands over to ``_serve``."""

    def __init__(self, world: SimWorld, plan: FaultPlan) -> None:
        self.world, self.plan = world, plan
        self.stopping = threading.Event()

    # -- routes ----------------------------------------------------------------------------

    async def replenishment_warehouses(self, request: Request) -> Response:
        branch = request.query_params.get("sucursal") or None
        names = self._branch_names(branch)

        def produce(now: datetime, chosen: Selection) -> bytes:
            return self._list(self.world.warehouse_rows(branch=branch), now, chosen)

        return await self._serve(request, Call.WAREHOUSES, names, produce)

    async def floor_warehouses(self, request: Request) -> Response:
        def produce(now: datetime, chosen: Selection) -> bytes:
            return self._list(self.world.warehouse_rows(sales_floor_only=True), now, chosen)

        return await self._serve(request, Call.WAREHOUSES, set(), produce)

    async def warehouse_catalogue(self, request: Request) -> Response:
        try:
            wanted = codes(await _body(request), "Codigoalmacen")
        except QueryError as exc:
            return _error(str(exc), 400)
        return await self._catalogue(request, wanted)

    async def branch_catalogue(self, request: Request) -> Response:
        try:
            branches = codes(await _body(request), "CodigoSucursal")
        except QueryError as exc:
            return _error(str(exc), 400)
        wanted: list[str] = []
        for branch in branches:
            loc = self.world.location_for_branch(branch)
            if loc is None:
                return _error(f"Sucursal {branch} no existe")
            wanted += [w.code for w in loc.warehouses if w.role is not WarehouseRole.RETURNS]
        return await self._catalogue(request, wanted)

    async def sales(self, request: Request) -> Response:
        try:
            query = sales_request(await _body(request))
        except QueryError as exc:
            return _error(str(exc), 400)
        loc = self.world.location_for_branch(query.branch)
        if loc is None:
            return _error(f"Sucursal {query.branch} no existe")
        names = {loc.id, loc.branch_code} | (
            {query.filter.warehouse} if query.filter.warehouse else set()
        )

        def produce(now: datetime, chosen: Selection) -> bytes:
            return self._sales(loc.id, query, now, chosen)

        return await self._serve(request, Call.SALES, names, produce)

    # -- shared flow -----------------------------------------------------------------------

    async def _serve(
        self, request: Request, call: Call, names: set[str], produce: Produce
    ) -> Response:
        """Pick the faults, wait out the delays, then answer with a replacement or the payload."""
        now = self.world.now()
        target = ",".join(sorted(names)) or "*"
        chosen = self.plan.select(call, names, now, target)
        for fault in chosen.delays:
            await self._delay(fault, request)
        if chosen.replacement is not None:
            return _replacement(chosen.replacement)
        return _json(await run_in_threadpool(produce, now, chosen))

    async def _delay(self, fault: Fault, request: Request) -> None:
        """Sleep in small steps so a hang ends when the client leaves or the server stops."""
        deadline = time.monotonic() + fault.amount
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            if fault.kind is FaultKind.HANG and await request.is_disconnected():
                return
            await asyncio.sleep(min(remaining, 0.05))

    def _branch_names(self, branch: str | None) -> set[str]:
        loc = self.world.location_for_branch(branch) if branch else None
        return set() if branch is None else {branch} | ({loc.id} if loc else set())

    def _rng(self, now: datetime, target: str) -> random.Random:
        return random.Random(f"{self.world.seed}:{target}:{now.isoformat()}")

    async def _catalogue(self, request: Request, wanted: list[str]) -> Response:
        known = [self.world.warehouse(code) for code in wanted]
        names = set(wanted) | {w.location_id for w in known if w}
        names |= {self.world.location(w.location_id).branch_code for w in known if w}

        def produce(now: datetime, chosen: Selection) -> bytes:
            if not chosen.payload:  # as it is: the array in one piece
                array, count = self.world.catalogue_array(wanted, now)
                return catalogue_envelope(wanted, array, now, count)
            shaped = shape(
                self.world.catalogue_rows(wanted, now), chosen.payload, self._rng(now, "cat")
            )
            body = catalogue_body(wanted, shaped.rows, now, shaped.declared)
            return truncate(body, shaped.truncate_at)

        return await self._serve(request, Call.CATALOGUE, names, produce)

    def _list(self, rows: list[dict[str, str]], now: datetime, chosen: Selection) -> bytes:
        shaped = shape(rows, chosen.payload, self._rng(now, "list"))
        return truncate(list_body(shaped.rows), shaped.truncate_at)

    def _sales(
        self, location_id: str, query: SalesRequest, now: datetime, chosen: Selection
    ) -> bytes:
        lines = self.world.sales_lines(location_id, query.filter, now)
        shaped = shape(lines, chosen.payload, self._rng(now, location_id))
        body = sales_body(query.echo, [line.body for line in shaped.rows], now, shaped.declared)
        for fault in chosen.payload:
            if fault.kind is FaultKind.VOID_LINES and lines:
                self._void(location_id, lines, fault, now)
        return truncate(body, shaped.truncate_at)

    def _void(self, location_id: str, lines: list[SoldLine], fault: Fault, now: datetime) -> None:
        """Void some of the lines just served: from now on KLK no longer returns them."""
        rng = self._rng(now, f"void:{location_id}")
        for line in rng.sample(lines, how_many(fault.amount, len(lines))):
            self.world.void_lines(location_id, line.day, [line.key], now)


def _replacement(fault: Fault) -> Response:
    if fault.kind is FaultKind.ERROR_BODY:
        return _error(fault.message or "No se pudo conectar con la base de datos de la sucursal")
    status = 503 if fault.kind is FaultKind.HTTP_503 else 500
    text = "Service Unavailable" if status == 503 else "Internal Server Error"
    return Response(text, status_code=status, media_type="text/plain")


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise QueryError("el cuerpo no es JSON válido") from None
