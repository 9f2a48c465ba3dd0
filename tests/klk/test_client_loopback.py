"""KlkClient against a real loopback HTTP server: exact request keys, timeouts, refused ports."""

from __future__ import annotations

import json
import time as clock
from datetime import date, time
from zoneinfo import ZoneInfo

import pytest
from klk_builders import article, catalogue_body, encode, warehouse
from loopback_server import Answer, LoopbackKlk
from tests.conftest import SAMPLES

from fluxion_etl.domain.states import ErrorCategory
from fluxion_etl.errors import KlkNetworkError, KlkTimeoutError
from fluxion_etl.klk.client import KlkClient, KlkTimeouts, RequestEvent, RetryPolicy

CARACAS = ZoneInfo("America/Caracas")


def _client(base_url: str, *, attempts: int = 1, read: float = 5.0, **kwargs: object) -> KlkClient:
    return KlkClient(
        base_url,
        timeouts=KlkTimeouts(connect=2.0, catalogue_read=read, sales_read=read),
        retry=RetryPolicy(attempts=attempts, initial_wait=0.0, max_wait=0.0),
        **kwargs,  # type: ignore[arg-type]
    )


def test_catalogue_posts_codigoalmacen(loopback_klk: LoopbackKlk) -> None:
    body = (SAMPLES / "articulos_almacen_APP-TPF.json").read_bytes()
    loopback_klk.answers["/maestra/articulos/almacen"] = Answer(body=body)

    with _client(loopback_klk.base_url) as client:
        fetched = client.catalogue("APP-TPF")

    (request,) = loopback_klk.received
    assert (request.method, request.path, request.query) == (
        "POST",
        "/maestra/articulos/almacen",
        {},
    )
    assert request.content_type == "application/json"
    assert json.loads(request.body) == {"Codigoalmacen": "APP-TPF"}
    assert len(fetched.value.items) == 6
    assert fetched.raw == body


def test_catalogue_by_branch_posts_codigosucursal(loopback_klk: LoopbackKlk) -> None:
    loopback_klk.answers["/maestra/articulos/reposicion"] = Answer(
        body=catalogue_body([article("1")], warehouses='["PSUC001"]')
    )

    with _client(loopback_klk.base_url) as client:
        fetched = client.catalogue_by_branch("SUC001")

    (request,) = loopback_klk.received
    assert (request.method, request.path) == ("POST", "/maestra/articulos/reposicion")
    assert json.loads(request.body) == {"CodigoSucursal": "SUC001"}
    assert fetched.value.warehouse_code == "PSUC001"


def test_branch_catalogue_over_several_warehouses_is_labelled_with_the_branch(
    loopback_klk: LoopbackKlk,
) -> None:
    loopback_klk.answers["/maestra/articulos/reposicion"] = Answer(
        body=catalogue_body([article("1")], warehouses='["APP-TPF", "PPF"]')
    )

    with _client(loopback_klk.base_url) as client:
        fetched = client.catalogue_by_branch("SUC001")

    assert fetched.value.warehouse_code == "SUC001"


def test_sales_posts_one_day_with_warehouse_and_hours(loopback_klk: LoopbackKlk) -> None:
    body = (SAMPLES / "ventas_SUC001.json").read_bytes()
    loopback_klk.answers["/ventas"] = Answer(body=body)

    with _client(loopback_klk.base_url) as client:
        fetched = client.sales(
            branch_code="SUC001",
            warehouse_code="APP-TPF",
            day=date(2025, 11, 17),
            start=time(12, 0),
            end=time(23, 59, 59),
            zone=CARACAS,
        )

    (request,) = loopback_klk.received
    assert (request.method, request.path) == ("POST", "/ventas")
    assert json.loads(request.body) == {
        "sucursal": "SUC001",
        "fecha_desde": "2025-11-17",
        "fecha_hasta": "2025-11-17",
        "almacen": "APP-TPF",
        "hora_desde": "12:00:00",
        "hora_hasta": "23:59:59",
    }
    assert len(fetched.value.lines) == 3


def test_sales_without_hours_sends_no_hour_keys(loopback_klk: LoopbackKlk) -> None:
    loopback_klk.answers["/ventas"] = Answer(body=b'{"meta": {"total_registros": 0}, "ventas": []}')

    with _client(loopback_klk.base_url) as client:
        fetched = client.sales(
            branch_code="SUC001", warehouse_code="APP-TPF", day=date(2025, 11, 17), zone=CARACAS
        )

    assert json.loads(loopback_klk.received[0].body) == {
        "sucursal": "SUC001",
        "fecha_desde": "2025-11-17",
        "fecha_hasta": "2025-11-17",
        "almacen": "APP-TPF",
    }
    assert fetched.value.lines == ()


@pytest.mark.parametrize(
    ("kind", "branch", "query"),
    [("Reposicion", "SUC001", {"sucursal": ["SUC001"]}), ("pisoventa", None, {})],
)
def test_warehouses_get_with_optional_branch(
    loopback_klk: LoopbackKlk, kind: str, branch: str | None, query: dict[str, list[str]]
) -> None:
    loopback_klk.answers[f"/maestra/almacenes/{kind}"] = Answer(body=encode([warehouse()]))

    with _client(loopback_klk.base_url) as client:
        fetched = client.warehouses(kind, branch)  # type: ignore[arg-type]

    (request,) = loopback_klk.received
    assert (request.method, request.path, request.query) == (
        "GET",
        f"/maestra/almacenes/{kind}",
        query,
    )
    assert request.body == b""
    assert fetched.value[0].warehouse_code == "APP-TPF"


def test_hanging_call_fails_with_timeout_within_read_timeout(loopback_klk: LoopbackKlk) -> None:
    loopback_klk.answers["/maestra/articulos/almacen"] = Answer(hang=True)
    started = clock.monotonic()

    with _client(loopback_klk.base_url, read=0.5) as client, pytest.raises(KlkTimeoutError):
        client.catalogue("APP-TPF")
    assert clock.monotonic() - started < 0.5 + 1.0


def test_hanging_call_is_retried_then_times_out(loopback_klk: LoopbackKlk) -> None:
    loopback_klk.answers["/ventas"] = Answer(hang=True)
    events: list[RequestEvent] = []
    started = clock.monotonic()

    with (
        _client(loopback_klk.base_url, attempts=2, read=0.3, on_request=events.append) as client,
        pytest.raises(KlkTimeoutError),
    ):
        client.sales(
            branch_code="SUC001", warehouse_code="APP-TPF", day=date(2025, 11, 17), zone=CARACAS
        )
    assert clock.monotonic() - started < 2 * 0.3 + 1.0
    assert len(loopback_klk.received) == 2
    assert [event.category for event in events] == [ErrorCategory.TIMEOUT] * 2


def test_refused_port_is_a_network_error(refused_url: str) -> None:
    events: list[RequestEvent] = []

    with (
        _client(refused_url, attempts=2, on_request=events.append) as client,
        pytest.raises(KlkNetworkError) as caught,
    ):
        client.catalogue("APP-TPF")
    assert caught.value.category is ErrorCategory.NETWORK
    assert refused_url in str(caught.value)
    assert [event.category for event in events] == [ErrorCategory.NETWORK] * 2
