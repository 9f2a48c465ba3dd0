"""The simulated world: chain layout, catalogue, sales and their arithmetic, determinism."""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import orjson
import pytest
from sim_helpers import CARACAS, MONDAY_EVENING, small_world

from fluxion_etl.config import load_config, parse_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.domain.records import LocationKind, WarehouseRole
from fluxion_etl.sim.stock import StockLiterals
from fluxion_etl.sim.world import SalesFilter, SimWorld

DAY = date(2025, 11, 17)


def test_first_twenty_locations_are_the_configured_chain(world: SimWorld) -> None:
    configured = load_config(None).locations
    simulated = [sim.location for sim in world.locations[:20]]
    assert simulated == list(configured)
    cedi = world.location("cedi_caracas")
    assert cedi.location.kind is LocationKind.DISTRIBUTION_CENTRE
    assert "PCDICS" in [w.code for w in cedi.warehouses]
    assert world.location_for_branch("SUC001").sales_floor.code == "APP-TPF"  # type: ignore[union-attr]


def test_further_locations_get_generated_codes(world: SimWorld) -> None:
    extra = world.locations[20]
    assert (extra.id, extra.branch_code, extra.sales_floor.code) == (  # type: ignore[union-attr]
        "tienda_21",
        "SUC101",
        "TGEN001",
    )


def test_every_branch_also_has_unsynced_warehouses_and_codes_are_unique(world: SimWorld) -> None:
    codes = [w.code for loc in world.locations for w in loc.warehouses]
    assert len(codes) == len(set(codes))
    for loc in world.locations:
        roles = {w.role for w in loc.warehouses}
        assert {WarehouseRole.PRINCIPAL, WarehouseRole.RETURNS} <= roles


def test_chain_config_toml_matches_the_simulated_locations(world: SimWorld) -> None:
    config = parse_config(tomllib.loads(world.chain_config_toml(22)), "sim")
    assert [loc.id for loc in config.locations] == [sim.id for sim in world.locations]
    assert config.locations[:20] == load_config(None).locations
    assert config.locations[20:] == tuple(sim.location for sim in world.locations[20:22])


def test_catalogue_has_na_fields_zero_negative_and_fractional_stock(world: SimWorld) -> None:
    rows = [orjson.loads(r) for r in world.catalogue_rows(["APP-TPF"])]
    assert len(rows) == world.skus
    assert all(len(r["Codigo"]) == 6 and r["Codigo"].isdigit() for r in rows)
    stocks = [Decimal(str(r["stock"])) for r in rows]
    zero_share = sum(1 for s in stocks if s == 0) / len(stocks)
    assert 0.35 < zero_share < 0.65
    assert any(s < 0 for s in stocks)
    assert any(s != s.to_integral_value() for s in stocks)
    assert all(s.as_tuple().exponent >= -3 for s in stocks)  # type: ignore[operator]
    assert any("N/A" in (r["Marca"], r["Barra"], r["Subcategoria"]) for r in rows)
    assert {r["Iva"] for r in rows} == {0, 16}
    assert all(Decimal(str(r["Precio"])).as_tuple().exponent >= -2 for r in rows)  # type: ignore[operator]


@pytest.mark.parametrize(
    "codes",
    [["APP-TPF"], ["APP-TPF", "PPF", "NOPE"], ["NOPE"], []],
    ids=["one", "summed", "unknown", "none"],
)
def test_catalogue_array_is_the_rows_joined(world: SimWorld, codes: list[str]) -> None:
    """The one-join array the routes serve says exactly what the rows say, through the day."""
    for at in (datetime.combine(DAY, time(7, 0), CARACAS), MONDAY_EVENING):
        rows = world.catalogue_rows(codes, at)
        array, count = world.catalogue_array(codes, at)
        assert array == b"[" + b",".join(rows) + b"]"
        assert count == len(rows)
        assert orjson.loads(array) == [orjson.loads(row) for row in rows]


def test_stock_literals_render_once_and_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    literals = StockLiterals()
    rendered = [literals[v] for v in (148_000, -3_415, 12_750, 0)]
    assert rendered == [b"148}", b"-3.415}", b"12.75}", b"0}"]
    monkeypatch.setattr(StockLiterals, "MAX", 3)
    literals = StockLiterals()
    for value in range(7):
        assert literals[value * 1000] == b"%d}" % value
        assert len(literals) <= 3


def test_stock_goes_down_with_the_days_sales(world: SimWorld, clock: ManualClock) -> None:
    morning = datetime.combine(DAY, time(7, 0), CARACAS)
    before = world.stock("APP-TPF", morning)
    after = world.stock("APP-TPF", MONDAY_EVENING)
    sold = Counter[int]()
    for line in world.sales_lines("tienda_01", SalesFilter(DAY, DAY, warehouse="APP-TPF")):
        sold[line.article] += line.qty_milli
    assert sold
    assert all(after[i] == before[i] - sold[i] for i in range(world.skus))


def test_same_seed_and_time_give_identical_bytes_and_another_seed_differs(
    clock: ManualClock,
) -> None:
    def snapshot(world: SimWorld) -> bytes:
        rows = world.catalogue_rows(["TAVBOL"])
        lines = world.sales_lines("tienda_02", SalesFilter(DAY, DAY))
        return b"".join(rows) + b"".join(line.body for line in lines)

    first, again = snapshot(small_world(clock)), snapshot(small_world(clock))
    assert first == again
    assert snapshot(small_world(clock, seed=2)) != first


def test_no_sales_in_the_future_or_outside_opening_hours(world: SimWorld) -> None:
    now_ticks = (19 * 3600) * 10_000_000
    lines = world.sales_lines("tienda_01", SalesFilter(DAY, DAY + timedelta(days=3)))
    assert lines
    assert {line.day for line in lines} == {DAY}
    assert all(7 * 3600 * 10_000_000 <= line.ticks <= now_ticks for line in lines)
    bosque = world.sales_lines(
        "tienda_08", SalesFilter(DAY - timedelta(days=1), DAY - timedelta(days=1))
    )
    assert max(line.ticks for line in bosque) > 21 * 3600 * 10_000_000  # BOSQUE closes at midnight


def test_the_distribution_centre_has_no_sales(world: SimWorld) -> None:
    lines = world.sales_lines("cedi_caracas", SalesFilter(DAY - timedelta(days=7), DAY))
    assert lines == []
    assert world.truth_sales("cedi_caracas", DAY).line_count == 0


def test_history_before_start_is_empty(clock: ManualClock) -> None:
    world = SimWorld(locations=2, skus=100, lines_per_day=50, clock=clock, start=DAY)
    assert (
        world.sales_lines(
            "tienda_01", SalesFilter(DAY - timedelta(days=1), DAY - timedelta(days=1))
        )
        == []
    )
    assert world.sales_lines("tienda_01", SalesFilter(DAY, DAY))


def test_line_money_adds_up_exactly(world: SimWorld) -> None:
    for line in world.sales_lines("tienda_02", SalesFilter(DAY, DAY)):
        item = orjson.loads(line.body)
        qty = Decimal(str(item["cantidad"][0]["cantidad_vendida"]))
        fin = {k: Decimal(str(v)) for k, v in item["financiero"][0].items()}
        gross_bs = (qty * fin["precio_unitario_bs"]).quantize(Decimal("0.01"))
        assert fin["venta_total_bs"] == gross_bs - fin["monto_descuento"]
        assert fin["precio_unitario_bs"] == (
            fin["precio_unitario_usd"] * Decimal(str(item["tasa_usd"]))
        ).quantize(Decimal("0.01"))
        assert fin["impuesto_monto"] == (
            fin["venta_total_bs"] * fin["impuesto_porcentaje"] / 100
        ).quantize(Decimal("0.01"))
        assert fin["utilidad_bruta_usd"] == fin["venta_total_usd"] - fin["costo_total_usd"]
        assert (item["tiene_promocion"] == "S") == bool(item["codigo_promocion"])


def test_invoices_have_several_lines_and_numbers_recur_across_stores(world: SimWorld) -> None:
    one = world.truth_sales("tienda_01", DAY)
    two = world.truth_sales("tienda_02", DAY)
    assert one.invoice_count < one.line_count
    assert len(one.keys) == one.line_count  # (invoice, line) is unique within a store
    assert {k[0] for k in one.keys} & {k[0] for k in two.keys}
    items = [
        orjson.loads(line.body) for line in world.sales_lines("tienda_02", SalesFilter(DAY, DAY))
    ]
    assert {i["cantidad"][0]["unidad_medida_venta"] for i in items} == {"KG", "UNIDAD"}
    assert any(i["es_no_fiscal"] for i in items)
    assert any(i["tiene_promocion"] == "S" for i in items)
    assert all(len(i["hora"].split(".")[1]) == 7 for i in items)


def test_truth_totals_equal_the_sum_of_the_served_lines(world: SimWorld) -> None:
    truth = world.truth_sales("tienda_03", DAY)
    served = [
        orjson.loads(line.body)
        for line in world.sales_lines("tienda_03", SalesFilter(DAY, DAY, warehouse="TTMAN"))
    ]
    assert truth.line_count == len(served) > 0
    assert truth.total_usd == sum(
        Decimal(str(i["financiero"][0]["venta_total_usd"])) for i in served
    )
    assert truth.total_bs == sum(Decimal(str(i["financiero"][0]["venta_total_bs"])) for i in served)
    assert truth.invoice_count == len({i["numero_factura"] for i in served})


def test_voided_lines_vanish_from_later_answers_stock_and_truth(
    world: SimWorld, clock: ManualClock
) -> None:
    before = world.truth_sales("tienda_01", DAY)
    victim = sorted(before.lines, key=lambda line: line.local_time)[0]
    stock_before = world.stock("APP-TPF")
    article = next(i for i, a in enumerate(world.master.articles) if a.code == victim.sku)
    earlier = clock.now()
    clock.advance(60)
    assert world.void_lines("tienda_01", DAY, [(victim.invoice_number, victim.line_number)]) == 1
    after = world.truth_sales("tienda_01", DAY)
    assert (victim.invoice_number, victim.line_number) not in after.keys
    assert after.total_usd == before.total_usd - victim.total_usd
    assert world.stock("APP-TPF")[article] == stock_before[article] + int(victim.quantity * 1000)
    assert world.truth_sales("tienda_01", DAY, at=earlier).keys == before.keys  # not retroactive


@pytest.mark.parametrize(
    "bad", [{"locations": 0}, {"skus": 0}, {"lines_per_day": -1}, {"skus": 10**6}]
)
def test_impossible_scales_are_refused(clock: ManualClock, bad: dict[str, int]) -> None:
    scale = {"locations": 2, "skus": 10, "lines_per_day": 10} | bad
    with pytest.raises(ValueError, match="must be"):
        SimWorld(
            clock=clock,
            locations=scale["locations"],
            skus=scale["skus"],
            lines_per_day=scale["lines_per_day"],
        )
