"""``/_sim/*``: the simulator's own controls, kept apart from KLK's routes.

GET    /_sim/info                   seed, scale, locations and their KLK codes, simulated now
GET    /_sim/config.toml?n=N        a configuration file for the first N simulated locations
GET    /_sim/clock                  simulated now; POST {"set": ISO} | {"advance_seconds": S}
                                    moves a manual clock (409 for any other clock)
GET    /_sim/faults?log=N           faults in force, injection counts by kind, the last N log
POST   /_sim/faults                 {"faults": "spec;spec" | [{...}], "mode": "replace"|"add"}
DELETE /_sim/faults                 remove every fault (counts and log are kept)
GET    /_sim/truth/sales?location=ID&day=YYYY-MM-DD[&warehouse=CODE][&items=0]
GET    /_sim/truth/catalogue?warehouse=CODE[&last=1][&items=0]
GET    /_sim/voids                  every voided line
POST   /_sim/voids                  {"location_id", "day", "keys": [[invoice, line], ...]}
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.faults import Fault, FaultPlan, FaultSyntaxError, parse_faults
from fluxion_etl.sim.world import SimWorld


def _ok(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _problem(message: str, status: int = 400) -> Response:
    return _ok({"detail": message}, status)


def control_routes(world: SimWorld, plan: FaultPlan) -> list[BaseRoute]:
    controls = _Controls(world, plan)
    return [
        Route("/info", controls.info, methods=["GET"]),
        Route("/config.toml", controls.config, methods=["GET"]),
        Route("/clock", controls.clock, methods=["GET", "POST"]),
        Route("/faults", controls.faults, methods=["GET", "POST", "DELETE"]),
        Route("/truth/sales", controls.truth_sales, methods=["GET"]),
        Route("/truth/catalogue", controls.truth_catalogue, methods=["GET"]),
        Route("/voids", controls.voids, methods=["GET", "POST"]),
    ]


class _Controls:
    def __init__(self, world: SimWorld, plan: FaultPlan) -> None:
        self.world, self.plan = world, plan

    async def info(self, request: Request) -> Response:
        world = self.world
        return _ok({
            "seed": world.seed, "skus": world.skus, "lines_per_day": world.lines_per_day,
            "now": world.now().isoformat(),
            "locations": [
                {"id": loc.id, "name": loc.location.name, "branch_code": loc.branch_code,
                 "has_sales": loc.sells,
                 "warehouses": [{"code": w.code, "role": w.role.value, "name": w.name}
                                for w in loc.warehouses]}
                for loc in world.locations
            ],
        })  # fmt: skip

    async def config(self, request: Request) -> Response:
        count = request.query_params.get("n")
        if count is not None and not count.isdigit():
            return _problem("n must be a whole number")
        return PlainTextResponse(
            self.world.chain_config_toml(None if count is None else int(count))
        )

    async def clock(self, request: Request) -> Response:
        clock = self.world.clock
        if request.method == "POST":
            if not isinstance(clock, ManualClock):
                return _problem(
                    f"the clock is {type(clock).__name__}; only a ManualClock moves", 409
                )
            body = orjson.loads(await request.body() or b"{}")
            try:
                if "set" in body:
                    clock.set(_aware(body["set"]))
                clock.advance(float(body.get("advance_seconds", 0)))
            except (TypeError, ValueError) as exc:
                return _problem(f"bad clock change: {exc}")
        return _ok(
            {
                "now": self.world.now().isoformat(),
                "kind": type(clock).__name__,
                "settable": isinstance(clock, ManualClock),
            }
        )

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.plan.clear()
        elif request.method == "POST":
            try:
                body = orjson.loads(await request.body())
                faults = _faults_from(body.get("faults", ""))
            except (orjson.JSONDecodeError, AttributeError):
                return _problem('send {"faults": "CALL@LOCATION:KIND;...", "mode": "replace"}')
            except FaultSyntaxError as exc:
                return _problem(str(exc))
            mode = body.get("mode") or request.query_params.get("mode", "replace")
            if mode not in ("replace", "add"):
                return _problem("mode must be replace or add")
            (self.plan.add if mode == "add" else self.plan.replace)(faults)
        limit = request.query_params.get("log", "200")
        return _ok(self.plan.to_json(log_limit=int(limit) if limit.isdigit() else 200))

    async def truth_sales(self, request: Request) -> Response:
        params = request.query_params
        location_id, day = params.get("location", ""), params.get("day", "")
        try:
            truth = self.world.truth_sales(
                location_id, date.fromisoformat(day), warehouse=params.get("warehouse") or None
            )
        except KeyError:
            return _problem(f"unknown location {location_id!r}", 404)
        except ValueError:
            return _problem("day must be YYYY-MM-DD")
        return _ok(truth.to_json(with_lines=params.get("items", "1") != "0"))

    async def truth_catalogue(self, request: Request) -> Response:
        params = request.query_params
        code = params.get("warehouse", "")
        if self.world.warehouse(code) is None:
            return _problem(f"unknown warehouse {code!r}", 404)
        truth = (
            self.world.last_catalogue(code)
            if params.get("last") == "1"
            else self.world.truth_catalogue(code)
        )
        if truth is None:
            return _problem(f"no catalogue of {code} has been served yet", 404)
        return _ok(truth.to_json(with_items=params.get("items", "1") != "0"))

    async def voids(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = orjson.loads(await request.body())
                keys = [(str(inv), int(n)) for inv, n in body["keys"]]
                self.world.location(body["location_id"])
                added = self.world.void_lines(
                    body["location_id"], date.fromisoformat(body["day"]), keys
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                return _problem(f'send {{"location_id", "day", "keys": [[invoice, line]]}}: {exc}')
            return _ok({"voided": added})
        return _ok([
            {"location_id": loc, "day": day.isoformat(), "invoice_number": key[0],
             "line_number": key[1], "voided_at": when.isoformat()}
            for loc, day, key, when in self.world.voids()
        ])  # fmt: skip


def _faults_from(value: Any) -> tuple[Fault, ...]:
    if isinstance(value, str):
        return parse_faults(value)
    if isinstance(value, list):
        return tuple(Fault.from_json(item) for item in value)
    raise FaultSyntaxError(str(value), "faults must be a spec string or a list of objects")


def _aware(text: Any) -> datetime:
    when = datetime.fromisoformat(str(text))
    if when.tzinfo is None:
        raise ValueError("give the time with its offset (e.g. 2025-11-17T16:00:00+00:00)")
    return when
