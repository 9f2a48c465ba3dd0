"""KLK's calls over real HTTP: shapes as in the samples, filters honoured, unknown codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sim_helpers import DAY, MONDAY_EVENING, small_world, ventas
from tests.conftest import SAMPLES

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld


@pytest.fixture(scope="module")
def world() -> SimWorld:
    """Overrides the per-test world: these read-only tests share one world and server."""
    return small_world(ManualClock(MONDAY_EVENING))


@pytest.fixture(scope="module")
def http(world: SimWorld) -> Iterator[httpx.Client]:
    with running_simulator(world) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture
def moving_world(clock: ManualClock) -> SimWorld:
    """A world of its own for a test that moves the clock."""
    return small_world(clock)


@pytest.fixture
def moving_http(moving_world: SimWorld) -> Iterator[httpx.Client]:
    with running_simulator(moving_world) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys, nesting and kinds (int and float are both numbers)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text("utf-8"))


def test_catalogue_has_the_shape_of_the_sample(http: httpx.Client) -> None:
    body = http.post("/maestra/articulos/almacen", json={"Codigoalmacen": "APP-TPF"}).json()
    assert shape(body) == shape(sample("articulos_almacen_APP-TPF.json"))
    assert json.loads(body["meta"]["almacences_filtrados"]) == ["APP-TPF"]
    assert body["meta"]["total_articulos"] == len(body["articulos"]) == 400
    assert body["meta"]["fecha_generacion"] == "2025-11-17T23:00:00.000Z"


def test_sales_have_the_shape_of_the_sample(http: httpx.Client) -> None:
    answer = ventas(http, "SUC001", almacen="APP-TPF", hora_desde="12:00", hora_hasta="23:59")
    body = answer.json()
    assert answer.headers["content-type"] == "application/json"
    assert shape(body) == shape(sample("ventas_SUC001.json"))
    assert body["meta"] | {"total_registros": 0, "fecha_generacion": ""} == {
        "sucursal_codigo": "SUC001",
        "fecha_desde": DAY,
        "fecha_hasta": DAY,
        "hora_desde": "12:00",
        "hora_hasta": "23:59",
        "CodArticulo": None,
        "almacen": "APP-TPF",
        "total_registros": 0,
        "fecha_generacion": "",
    }
    assert body["meta"]["total_registros"] == len(body["ventas"]) > 0


def test_number_literals_are_plain_decimals(http: httpx.Client) -> None:
    literals: list[str] = []

    def as_decimal(text: str) -> Decimal:
        literals.append(text)
        return Decimal(text)

    raw = ventas(http, "SUC007", almacen="TAVBOL").content
    body = json.loads(raw, parse_float=as_decimal)
    assert literals
    assert not [text for text in literals if "e" in text.lower()]
    for item in body["ventas"]:
        for key, value in item["financiero"][0].items():
            assert -int(Decimal(value).as_tuple().exponent) <= 2, (key, value)


def test_warehouse_lists(http: httpx.Client) -> None:
    branch = http.get("/maestra/almacenes/Reposicion", params={"sucursal": "SUC001"}).json()
    assert [row["CodigoAlmacen"] for row in branch] == ["APP-TPF", "PPF", "DPF"]
    assert set(branch[0]) == {"NombreSucursal", "CodigoSucursal", "CodigoAlmacen", "NombreAlmacen"}
    everything = http.get("/maestra/almacenes/Reposicion").json()
    assert {"PCDICS", "TGEN002"} <= {row["CodigoAlmacen"] for row in everything}
    floors = http.get("/maestra/almacenes/pisoventa").json()
    assert len(floors) == 21  # 19 configured stores + 2 generated; no distribution centre
    assert http.get("/maestra/almacenes/Reposicion", params={"sucursal": "SUC999"}).json() == []


def test_branch_catalogue_sums_its_replenishment_warehouses(
    http: httpx.Client, world: SimWorld
) -> None:
    body = http.post("/maestra/articulos/reposicion", json={"CodigoSucursal": "SUC001"}).json()
    assert json.loads(body["meta"]["almacences_filtrados"]) == ["APP-TPF", "PPF"]
    floor, principal = world.stock("APP-TPF"), world.stock("PPF")
    stocks = [round(row["stock"] * 1000) for row in body["articulos"]]
    assert stocks == [a + b for a, b in zip(floor, principal, strict=True)]
    listed = http.post(
        "/maestra/articulos/almacen", json={"Codigoalmacen": ["APP-TPF", "PPF"]}
    ).json()
    assert listed["articulos"] == body["articulos"]


def test_without_almacen_the_branchs_other_warehouses_leak_in(http: httpx.Client) -> None:
    everything = ventas(http, "SUC007").json()["ventas"]
    floor = ventas(http, "SUC007", almacen="TAVBOL").json()["ventas"]
    warehouses = {item["cantidad"][0]["codigo_almacen"] for item in everything}
    assert warehouses == {"TAVBOL", "PAVBOL"}
    assert len(floor) < len(everything)
    assert {item["cantidad"][0]["codigo_almacen"] for item in floor} == {"TAVBOL"}


def test_codarticulo_selects_one_article(http: httpx.Client) -> None:
    items = ventas(http, "SUC007", almacen="TAVBOL").json()["ventas"]
    code = items[0]["producto"][0]["codigo_producto"]
    only = ventas(http, "SUC007", almacen="TAVBOL", CodArticulo=code).json()
    assert only["meta"]["CodArticulo"] == code
    assert only["ventas"]
    assert {i["producto"][0]["codigo_producto"] for i in only["ventas"]} == {code}


def test_hour_bounds_are_inclusive_and_apply_to_each_day(http: httpx.Client) -> None:
    day_items = ventas(http, "SUC007", almacen="TAVBOL").json()["ventas"]
    first_time = day_items[0]["hora"]
    exact = ventas(
        http, "SUC007", almacen="TAVBOL", hora_desde=first_time[:8], hora_hasta=first_time
    )
    assert [i["hora"] for i in exact.json()["ventas"]] == [
        i["hora"] for i in day_items if i["hora"] == first_time
    ]
    window = ventas(
        http,
        "SUC007",
        "2025-11-15",
        to=DAY,
        almacen="TAVBOL",
        hora_desde="12:00",
        hora_hasta="13:00:00",
    ).json()["ventas"]
    assert {i["fecha"] for i in window} == {"2025-11-15", "2025-11-16", DAY}
    assert all("12:00:00" <= i["hora"] <= "13:00:00" for i in window)


def test_sales_are_never_in_the_future(moving_http: httpx.Client, clock: ManualClock) -> None:
    http = moving_http
    items = ventas(http, "SUC007", DAY, to="2025-11-20", almacen="TAVBOL").json()["ventas"]
    assert {i["fecha"] for i in items} == {DAY}
    assert max(i["hora"] for i in items) <= "19:00:00"
    clock.advance(hours=2)
    later = ventas(http, "SUC007", almacen="TAVBOL").json()["ventas"]
    assert len(later) > len(items)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/maestra/articulos/almacen", {"Codigoalmacen": "NOPE"}),
        (
            "/ventas",
            {"sucursal": "SUC001", "fecha_desde": DAY, "fecha_hasta": DAY, "almacen": "NOPE"},
        ),
        ("/ventas", {"sucursal": "SUC000", "fecha_desde": DAY, "fecha_hasta": DAY}),
    ],
)
def test_unknown_warehouses_and_the_dc_branch_give_empty_lists(
    http: httpx.Client, path: str, body: dict[str, str]
) -> None:
    answer = http.post(path, json=body).json()
    rows = answer.get("articulos", answer.get("ventas"))
    assert rows == []
    assert answer["meta"].get("total_articulos", answer["meta"].get("total_registros")) == 0


def test_an_unknown_branch_is_an_error_body(http: httpx.Client) -> None:
    answer = ventas(http, "SUC999")
    assert answer.status_code == 200
    assert "SUC999" in answer.json()["error"]
    branch = http.post("/maestra/articulos/reposicion", json={"CodigoSucursal": "SUC999"})
    assert "error" in branch.json()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"sucursal": "SUC001", "fecha_hasta": "2025-11-17"}',
        b'{"sucursal": "SUC001", "fecha_desde": "17/11/2025", "fecha_hasta": "2025-11-17"}',
        b'{"sucursal": "SUC001", "fecha_desde": "2025-11-17", "fecha_hasta": "2025-11-17", '
        b'"hora_desde": "7am"}',
        b'{"sucursal": "SUC001", "fecha_desde": "2020-01-01", "fecha_hasta": "2025-11-17"}',
    ],
)
def test_unreadable_sales_bodies_are_400_errors(http: httpx.Client, body: bytes) -> None:
    answer = http.post("/ventas", content=body)
    assert answer.status_code == 400
    assert answer.json()["error"]


def test_same_time_same_bytes_over_http(http: httpx.Client) -> None:
    def fetch() -> bytes:
        return (
            ventas(http, "SUC001", almacen="APP-TPF").content
            + http.post("/maestra/articulos/almacen", json={"Codigoalmacen": "APP-TPF"}).content
        )

    assert fetch() == fetch()


def test_truth_and_clock_endpoints(moving_http: httpx.Client, moving_world: SimWorld) -> None:
    http, world = moving_http, moving_world
    truth = http.get("/_sim/truth/sales", params={"location": "tienda_01", "day": DAY}).json()
    expected = world.truth_sales("tienda_01", date(2025, 11, 17))
    assert (truth["lines"], truth["total_usd"], truth["total_bs"]) == (
        expected.line_count,
        str(expected.total_usd),
        str(expected.total_bs),
    )
    assert len(truth["items"]) == truth["lines"]
    assert (
        http.get("/_sim/truth/catalogue", params={"warehouse": "APP-TPF", "last": "1"}).status_code
        == 404
    )
    http.post("/maestra/articulos/almacen", json={"Codigoalmacen": "APP-TPF"})
    last = http.get("/_sim/truth/catalogue", params={"warehouse": "APP-TPF", "last": "1"}).json()
    assert last["articles"] == 400
    assert last["as_of"] == "2025-11-17T23:00:00+00:00"
    moved = http.post("/_sim/clock", json={"advance_seconds": 90}).json()
    assert moved["now"] == "2025-11-17T23:01:30+00:00"
    assert (
        http.post("/_sim/clock", json={"set": "2025-11-18T12:00:00+00:00"})
        .json()["now"]
        .startswith("2025-11-18T12:00")
    )
    toml = http.get("/_sim/config.toml", params={"n": "3"}).text
    assert toml.count("[[locations]]") == 3
