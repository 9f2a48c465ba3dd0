"""Faults: the compact syntax, each kind doing what it says over HTTP, targeting, and the log."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import httpx
import pytest
from sim_helpers import CARACAS, MONDAY_EVENING, small_world, ventas

from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.sim.faults import (
    Call,
    Fault,
    FaultKind,
    FaultPlan,
    FaultSyntaxError,
    parse_fault,
    parse_faults,
)
from fluxion_etl.sim.server import running_simulator
from fluxion_etl.sim.world import SimWorld

CATALOGUE = {"Codigoalmacen": "APP-TPF"}


def catalogue(http: httpx.Client, code: str = "APP-TPF") -> httpx.Response:
    return http.post("/maestra/articulos/almacen", json={"Codigoalmacen": code})


# -- syntax -----------------------------------------------------------------------------------


def test_compact_syntax_reads_every_option() -> None:
    faults = parse_faults(
        "sales@tienda_03:http_503; *@*:latency=0.2:p=0.1;"
        "catalogue@APP-TPF:hang=5:n=2:from=2025-11-17T12:00:00:until=2025-11-17T13:00:00-04:00;"
        "sales@*:error_body:msg=caido: sin red"
    )
    assert faults[0] == Fault(FaultKind.HTTP_503, "sales", "tienda_03")
    assert faults[1] == Fault(FaultKind.LATENCY, "*", "*", value=0.2, probability=0.1)
    hang = faults[2]
    assert (hang.count, hang.value) == (2, 5.0)
    assert hang.since == datetime(2025, 11, 17, 12, 0, tzinfo=CARACAS)
    assert hang.until == datetime.fromisoformat("2025-11-17T13:00:00-04:00")
    assert faults[3].message == "caido: sin red"


def test_spec_round_trips_through_text_and_json() -> None:
    text = "catalogue@tienda_01:truncated_json=0.3:p=0.5:n=3:from=2025-11-17T12:00:00-04:00"
    fault = parse_fault(text)
    assert parse_fault(fault.spec()) == fault
    assert Fault.from_json(fault.to_json()) == fault


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("sales:http_500", "CALL@LOCATION"),
        ("orders@*:http_500", "unknown call"),
        ("sales@*:explode", "unknown kind"),
        ("sales@*:latency=fast", "could not convert"),
        ("sales@*:http_500:p=2", "between 0 and 1"),
        ("sales@*:http_500:from=yesterday", "Invalid isoformat"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(FaultSyntaxError, match=complaint):
        parse_faults(spec)


# -- each kind over HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_503", 503)])
def test_http_status_faults(http: httpx.Client, plan: FaultPlan, kind: str, status: int) -> None:
    plan.replace(parse_faults(f"sales@tienda_01:{kind}"))
    assert ventas(http, "SUC001", almacen="APP-TPF").status_code == status
    assert ventas(http, "SUC007", almacen="TAVBOL").status_code == 200  # other locations unaffected
    assert catalogue(http).status_code == 200  # other calls unaffected


def test_error_body_is_http_200_with_error(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("catalogue@*:error_body:msg=sin conexion"))
    answer = catalogue(http)
    assert (answer.status_code, answer.json()) == (200, {"error": "sin conexion"})


def test_latency_delays_then_answers(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("warehouses@*:latency=0.3"))
    started = time.monotonic()
    assert http.get("/maestra/almacenes/pisoventa").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_hang_outlasts_the_client_timeout_and_stops_with_the_server(
    world: SimWorld, plan: FaultPlan
) -> None:
    plan.replace(parse_faults("sales@*:hang"))
    started = time.monotonic()
    with running_simulator(world, plan) as url, httpx.Client(base_url=url, timeout=0.5) as http:
        with pytest.raises(httpx.ReadTimeout):
            ventas(http, "SUC001")
        with httpx.Client(base_url=url, timeout=10) as other:
            other.get("/maestra/almacenes/pisoventa")  # the server is not blocked by the hang
    assert time.monotonic() - started < 5


def test_truncated_json_cannot_be_parsed(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("sales@*:truncated_json=0.4"))
    answer = ventas(http, "SUC001", almacen="APP-TPF")
    whole = len(answer.content) / 0.4
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.content)
    assert 0.39 * whole <= len(answer.content) <= 0.41 * whole


def test_count_mismatch_declares_more_rows_than_sent(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("sales@*:count_mismatch=2;catalogue@*:count_mismatch=-1"))
    sales = ventas(http, "SUC001", almacen="APP-TPF").json()
    assert sales["meta"]["total_registros"] == len(sales["ventas"]) + 2
    articles = catalogue(http).json()
    assert articles["meta"]["total_articulos"] == len(articles["articulos"]) - 1


def test_duplicate_lines_repeat_rows_in_one_answer(http: httpx.Client, plan: FaultPlan) -> None:
    clean = ventas(http, "SUC001", almacen="APP-TPF").json()["ventas"]
    plan.replace(parse_faults("sales@*:duplicate_lines=3"))
    doubled = ventas(http, "SUC001", almacen="APP-TPF").json()
    rows = doubled["ventas"]
    assert len(rows) == len(clean) + 3 == doubled["meta"]["total_registros"]
    keys = [(r["numero_factura"], r["linea"]) for r in rows]
    assert len(set(keys)) == len(clean)


def test_empty_sales_during_opening_hours(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("sales@tienda_01:empty_sales"))
    body = ventas(http, "SUC001", almacen="APP-TPF").json()
    assert body["ventas"] == []
    assert body["meta"]["total_registros"] == 0


def test_void_lines_vanish_from_later_answers_and_the_truth(
    http: httpx.Client, plan: FaultPlan, world: SimWorld
) -> None:
    before = world.truth_sales("tienda_01", MONDAY_EVENING.date())
    plan.replace(parse_faults("sales@tienda_01:void_lines=4:n=1"))
    served = ventas(http, "SUC001", almacen="APP-TPF").json()["ventas"]
    assert len(served) == before.line_count  # the triggering answer still has them
    after = ventas(http, "SUC001", almacen="APP-TPF").json()["ventas"]
    gone = before.keys - {(r["numero_factura"], r["linea"]) for r in after}
    assert len(gone) == 4
    assert len(after) == before.line_count - 4
    truth = world.truth_sales("tienda_01", MONDAY_EVENING.date())
    assert truth.keys == before.keys - gone
    assert {(v[2]) for v in world.voids()} == gone


# -- targeting, probability, count, window ----------------------------------------------------


def test_count_limits_injections_to_the_first_calls(http: httpx.Client, plan: FaultPlan) -> None:
    plan.replace(parse_faults("catalogue@tienda_01:http_500:n=2"))
    statuses = [catalogue(http).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]


def test_probability_is_seeded(clock: ManualClock) -> None:
    def statuses() -> list[bool]:
        plan = FaultPlan("sales@*:http_500:p=0.5", seed=7)
        return [bool(plan.select(Call.SALES, {"x"}, clock.now(), "x")) for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert 8 < sum(first) < 32


def test_window_is_in_simulated_time(
    http: httpx.Client, plan: FaultPlan, clock: ManualClock
) -> None:
    plan.replace(
        parse_faults("sales@*:http_503:from=2025-11-17T19:30:00:until=2025-11-17T20:00:00")
    )
    assert ventas(http, "SUC001").status_code == 200
    clock.advance(minutes=30)
    assert ventas(http, "SUC001").status_code == 503
    clock.advance(minutes=30)
    assert ventas(http, "SUC001").status_code == 200


def test_location_may_be_named_by_branch_or_warehouse_code(
    http: httpx.Client, plan: FaultPlan
) -> None:
    plan.replace(parse_faults("catalogue@APP-TPF:http_500;sales@SUC007:http_503"))
    assert catalogue(http).status_code == 500
    assert catalogue(http, "TAVBOL").status_code == 200
    assert ventas(http, "SUC007").status_code == 503


def test_a_replacement_wins_and_skipped_payload_faults_are_not_logged(clock: ManualClock) -> None:
    plan = FaultPlan("sales@*:duplicate_lines;sales@*:latency=0.1;sales@*:http_500")
    chosen = plan.select(Call.SALES, {"tienda_01"}, clock.now(), "tienda_01")
    assert chosen.replacement is not None
    assert chosen.replacement.kind is FaultKind.HTTP_500
    assert [f.kind for f in chosen.delays] == [FaultKind.LATENCY]
    assert chosen.payload == ()
    assert plan.counts() == {"latency": 1, "http_500": 1}


def test_kinds_that_make_no_sense_for_a_call_never_match(clock: ManualClock) -> None:
    plan = FaultPlan("*@*:void_lines;*@*:count_mismatch")
    assert not plan.select(Call.WAREHOUSES, set(), clock.now(), "*")
    assert [f.kind for f in plan.select(Call.CATALOGUE, set(), clock.now(), "*").payload] == [
        FaultKind.COUNT_MISMATCH
    ]


# -- run-time control and the log -------------------------------------------------------------


def test_faults_are_set_listed_and_removed_over_http(http: httpx.Client) -> None:
    http.post("/_sim/faults", json={"faults": "sales@tienda_01:http_500"})
    added = http.post(
        "/_sim/faults", json={"faults": [{"kind": "http_503", "call": "catalogue"}], "mode": "add"}
    ).json()
    assert [f["spec"] for f in added["faults"]] == [
        "sales@tienda_01:http_500",
        "catalogue@*:http_503",
    ]
    assert ventas(http, "SUC001").status_code == 500
    assert catalogue(http).status_code == 503
    listed = http.get("/_sim/faults").json()
    assert listed["counts"] == {"http_500": 1, "http_503": 1}
    assert [e["kind"] for e in listed["log"]] == ["http_500", "http_503"]
    assert listed["log"][0]["target"] == "SUC001,tienda_01"
    assert http.delete("/_sim/faults").json()["faults"] == []
    assert ventas(http, "SUC001").status_code == 200
    bad = http.post("/_sim/faults", json={"faults": "sales@*:boom"})
    assert bad.status_code == 400
    assert "unknown kind" in bad.json()["detail"]


def test_every_kind_is_counted_in_the_log(clock: ManualClock) -> None:
    world = small_world(clock, locations=2)
    every = ";".join(
        f"sales@*:{kind}" + ("=0.01" if kind in ("latency", "hang") else "") + ":n=1"
        for kind in FaultKind
    )
    plan = FaultPlan(every)
    with running_simulator(world, plan) as url, httpx.Client(base_url=url, timeout=5) as http:
        for _ in range(len(FaultKind)):
            ventas(http, "SUC001", almacen="APP-TPF")
        clock.advance(timedelta(minutes=1).total_seconds())
    assert plan.counts() == {kind.value: 1 for kind in FaultKind}
