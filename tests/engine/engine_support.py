"""Helpers of the sync-engine tests: a small simulated chain, runs through the one runner, and what
the database holds compared with what the simulator served.

The expected values are read from the simulator's own bytes (``SoldLine.body``, the catalogue rows)
with the standard ``json`` module and mapped to our columns here, by the field names of SPEC §3:
an account independent of ``klk/decode.py``, so a decoding or loading slip shows as a difference.
"""

from __future__ import annotations

import json
import ssl
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Engine, event, select, text

from fluxion_etl.config import ChainConfig, parse_config
from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.engine.submit import submit
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.settings import Settings
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.topology import chain_config_toml
from fluxion_etl.sim.world import SalesFilter, SimWorld
from fluxion_etl.store import ledger, sync_state
from fluxion_etl.store.coverage import CoverageRange, coverage
from fluxion_etl.store.ledger import ItemRow, RunRow
from fluxion_etl.store.schema import inventory_current, products, sales_lines

CARACAS = ZoneInfo("America/Caracas")
NOW = datetime(2025, 11, 17, 19, 0, tzinfo=CARACAS)
"""Monday 19:00 in Caracas: stores (07:00-21:00) have sold most of the day."""
D1, D2, TODAY = date(2025, 11, 15), date(2025, 11, 16), date(2025, 11, 17)
STORES = ("tienda_01", "tienda_02", "tienda_03")
DC = "cedi_caracas"
LOCATIONS = (*STORES, DC)
WORLD_LOCATIONS = 20  # the distribution centre is the 20th simulated location

# Columns the loader derives (or the database assigns) rather than copies from KLK.
NOT_FROM_KLK = ("id", "location_id", "loaded_at", "run_id", "fingerprint")
NULL_TEXTS = ("", "N/A")


def build_world(clock: Clock, *, skus: int = 120, lines_per_day: int = 120) -> SimWorld:
    return SimWorld(
        locations=WORLD_LOCATIONS, skus=skus, lines_per_day=lines_per_day, seed=5, clock=clock
    )


def chain_config(world: SimWorld, ids: Iterable[str] = LOCATIONS) -> ChainConfig:
    """The configuration of these simulated locations (three stores and the distribution centre)."""
    toml = chain_config_toml(tuple(world.location(i) for i in ids))
    return parse_config(tomllib.loads(toml), "<engine tests>")


def fast_settings(database_url: str, klk_url: str, **overrides: Any) -> Settings:
    """Small timeouts and waits, so faults and retries cost milliseconds."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "klk_base_url": klk_url,
        "klk_connect_timeout": 2.0,
        "klk_catalogue_read_timeout": 10.0,
        "klk_sales_read_timeout": 10.0,
        "klk_retry_attempts": 3,
        "klk_retry_initial_wait": 0.01,
        "klk_retry_max_wait": 0.02,
        "concurrency": 2,
        "lease_ttl_seconds": 60.0,
        "heartbeat_seconds": 0.2,
        **overrides,
    }
    return Settings(**values)


class MovableClock(Clock, Protocol):
    """A clock the test moves (ManualClock, or the shared clock of the CLI tests)."""

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime: ...


@dataclass(frozen=True)
class Outcome:
    """A finished run as the ledger records it."""

    run: RunRow
    items: dict[str, ItemRow]

    @property
    def status(self) -> RunStatus:
        return self.run.status


@dataclass
class Chain:
    """The simulated chain served over loopback, and a database, sharing one manual clock."""

    engine: Engine
    world: SimWorld
    plan: FaultPlan
    clock: MovableClock
    url: str
    config: ChainConfig
    settings: Settings
    _clients: list[KlkClient] = field(default_factory=list)
    _shared: KlkClient | None = None

    def runtime(self, transport: httpx.BaseTransport | None = None, **overrides: Any) -> Runtime:
        """A runtime of its own (owner, progress hook); the KLK client is shared unless the
        settings or transport differ."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        shared = not overrides and transport is None
        if shared and self._shared is not None:
            klk = self._shared
        else:
            klk = KlkClient.from_settings(settings, transport=transport or http_transport())
            self._clients.append(klk)
            self._shared = klk if shared else self._shared
        return Runtime(
            settings=settings, config=self.config, engine=self.engine, klk=klk, clock=self.clock
        )

    def submit(
        self,
        job: Job,
        *,
        locations: tuple[str, ...] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        params: dict[str, Any] | None = None,
        rt: Runtime | None = None,
    ) -> int:
        rt = rt or self.runtime()
        trigger = Trigger.BACKFILL if date_from else Trigger.CLI
        request = RunRequest(
            job=job,
            trigger=trigger,
            locations=locations,
            date_from=date_from,
            date_to=date_to,
            requested_by="test",
            params=params or {},
        )
        result = submit(rt.engine, request, config=rt.config, settings=rt.settings, clock=rt.clock)
        return result.run_id

    def run(self, job: Job, *, rt: Runtime | None = None, **kwargs: Any) -> Outcome:
        """Submit and execute one run in this process; returns what the ledger says of it."""
        rt = rt or self.runtime()
        run_id = self.submit(job, rt=rt, **kwargs)
        execute_run(rt, run_id)
        return outcome(self.engine, run_id)

    def close(self) -> None:
        for client in self._clients:
            client.close()


def latest_run(engine: Engine) -> Outcome:
    """The newest run (ids are not reset between tests on PostgreSQL: never assume them)."""
    with engine.connect() as conn:
        newest = ledger.list_runs(conn, limit=1)
    assert newest, "no run was recorded"
    return outcome(engine, newest[0].id)


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def http_transport() -> httpx.HTTPTransport:
    """httpx's default transport, with the TLS trust store loaded once per session instead of
    once per client (0.1-0.2 s of CPU each; the simulator speaks plain HTTP anyway)."""
    return httpx.HTTPTransport(verify=_tls_context())


def outcome(engine: Engine, run_id: int) -> Outcome:
    with engine.connect() as conn:
        run = ledger.get_run(conn, run_id)
        items = ledger.get_items(conn, run_id)
    assert run is not None
    return Outcome(run, {item.location_id: item for item in items})


# --- what the simulator served ---------------------------------------------------------------


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in NULL_TEXTS else value


def _sold_at(day: str, hora: str) -> datetime:
    clock, _, fraction = hora.partition(".")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    micros = int(fraction.ljust(6, "0")[:6])
    local = datetime.combine(date.fromisoformat(day), time(hours, minutes, seconds, micros))
    return local.replace(tzinfo=CARACAS).astimezone(UTC)


def _flag(value: bool | str | None) -> bool:
    return value is True or (isinstance(value, str) and value.strip().upper() in ("S", "SI", "1"))


def expected_line(body: bytes) -> dict[str, Any]:
    """Our columns for one served ``ventas[]`` item (SPEC §3 names → SPEC §4.7 columns)."""
    row = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    product, qty, money = row["producto"][0], row["cantidad"][0], row["financiero"][0]
    return {
        "invoice_number": row["numero_factura"],
        "line_number": int(row["linea"]),
        "sold_at": _sold_at(row["fecha"], row["hora"]),
        "business_day": date.fromisoformat(row["fecha"]),
        "sku": product["codigo_producto"],
        "product_description": _text(product["descripcion_producto"]),
        "brand": _text(product["marca_producto"]),
        "model": _text(product["modelo_producto"]),
        "category_code": _text(product["categoria_producto"]),
        "group_name": _text(product["grupo_articulo"]),
        "subgroup_code": _text(product["subgrupo_producto"]),
        "category_name": _text(product["categoria_nombre"]),
        "barcode": _text(product["codigo_barras"]),
        "serial": _text(product["serial"]),
        "imei": _text(product["imei"]),
        "warehouse_code": qty["codigo_almacen"],
        "warehouse_name": _text(qty["nombre_almacen"]),
        "quantity": qty["cantidad_vendida"],
        "unit_weight": qty["peso_unitario"],
        "gross_weight": qty["peso_bruto"],
        "unit_volume": qty["volumen_unitario"],
        "sales_unit": _text(qty["unidad_medida_venta"]),
        "unit_factor": qty["factor_unidad_medida"],
        "quantity_in_units": qty["total_cantidad_por_unidad_medida"],
        "computed_weight": qty["peso_calculado"],
        "unit_cost_bs": money["costo_unitario_bs"],
        "unit_cost_usd": money["costo_unitario_usd"],
        "unit_price_bs": money["precio_unitario_bs"],
        "unit_price_usd": money["precio_unitario_usd"],
        "tax_rate": money["impuesto_porcentaje"],
        "tax_amount_bs": money["impuesto_monto"],
        "discount_rate": money["porcentaje_descuento"],
        "discount_amount_bs": money["monto_descuento"],
        "total_bs": money["venta_total_bs"],
        "total_usd": money["venta_total_usd"],
        "total_cost_bs": money["costo_total_bs"],
        "total_cost_usd": money["costo_total_usd"],
        "gross_profit_bs": money["utilidad_bruta_bs"],
        "gross_profit_usd": money["utilidad_bruta_usd"],
        "invoice_total_bs": row["total_factura"],
        "exchange_rate": row["tasa_usd"],
        "is_non_fiscal": _flag(row["es_no_fiscal"]),
        "has_promotion": _flag(row["tiene_promocion"]),
        "promotion_code": _text(row["codigo_promocion"]),
    }


Key = tuple[str, int]


def served_sales(
    world: SimWorld, location_id: str, day: date, *, at: datetime | None = None
) -> dict[Key, dict[str, Any]]:
    """The lines KLK answers for (location, local day, its sales floor) at ``at`` (default now)."""
    floor = world.location(location_id).sales_floor
    assert floor is not None
    lines = world.sales_lines(location_id, SalesFilter(day, day, warehouse=floor.code), at)
    expected = [expected_line(line.body) for line in lines]
    return {(e["invoice_number"], e["line_number"]): e for e in expected}


def served_catalogue(world: SimWorld, code: str) -> dict[str, dict[str, Any]]:
    """The articles KLK answers for warehouse ``code`` now, by SKU."""
    out: dict[str, dict[str, Any]] = {}
    for raw in world.catalogue_rows([code]):
        row = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        out[row["Codigo"]] = row
    return out


# --- what the database holds ---------------------------------------------------------------


def stored_sales(
    engine: Engine, location_id: str, day: date | None = None
) -> dict[Key, dict[str, Any]]:
    columns = [c for c in sales_lines.c if c.name not in NOT_FROM_KLK]
    query = select(*columns).where(sales_lines.c.location_id == location_id)
    if day is not None:
        query = query.where(sales_lines.c.business_day == day)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    return {(r["invoice_number"], r["line_number"]): r for r in rows}


def sales_stamps(engine: Engine, location_id: str) -> dict[Key, tuple[Any, ...]]:
    """(id, loaded_at, run_id) of each stored line: what a rewrite would change."""
    c = sales_lines.c
    query = select(c.invoice_number, c.line_number, c.id, c.loaded_at, c.run_id).where(
        c.location_id == location_id
    )
    with engine.connect() as conn:
        return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(query)}


def stored_stock(engine: Engine, location_id: str, code: str) -> dict[str, dict[str, Any]]:
    c = inventory_current.c
    query = select(c.sku, c.stock, c.price_usd, c.tax_rate, c.updated_at, c.run_id).where(
        c.location_id == location_id, c.warehouse_code == code
    )
    with engine.connect() as conn:
        return {row.sku: dict(row._mapping) for row in conn.execute(query)}


def coverage_of(engine: Engine, location_id: str) -> list[CoverageRange]:
    far = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    with engine.connect() as conn:
        return coverage(conn, location_id=location_id, start=far[0], end=far[1])


def watermark_of(engine: Engine, location_id: str) -> datetime | None:
    with engine.connect() as conn:
        state = sync_state.get_state(conn, "sales", location_id)
    return state.watermark if state else None


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


# --- comparisons ---------------------------------------------------------------------------


def assert_sales_equal_served(chain: Chain, location_id: str, days: Iterable[date]) -> int:
    """Every stored line of each day equals the served one field by field; returns the lines."""
    total = 0
    for day in days:
        served = served_sales(chain.world, location_id, day)
        stored = stored_sales(chain.engine, location_id, day)
        assert served, f"the simulator sells at {location_id} on {day}"
        assert stored.keys() == served.keys(), f"{location_id} {day}: different lines"
        for key, expected in served.items():
            row = stored[key]
            assert row == expected, f"{location_id} {day} {key}: {_diff(row, expected)}"
            money = [v for n, v in row.items() if isinstance(expected[n], Decimal)]
            assert all(isinstance(v, Decimal) for v in money), "amounts come back as Decimal"
        truth = chain.world.truth_sales(location_id, day)
        assert {(k[0], k[1]) for k in stored} == truth.keys
        assert sum((r["total_usd"] for r in stored.values()), Decimal(0)) == truth.total_usd
        assert sum((r["total_bs"] for r in stored.values()), Decimal(0)) == truth.total_bs
        total += len(stored)
    return total


def assert_inventory_equal_served(chain: Chain, location_id: str) -> int:
    """Current stock, price and tax of every article equal the served catalogue; returns count."""
    total = 0
    for warehouse in chain.config.location(location_id).warehouses:
        served = served_catalogue(chain.world, warehouse.code)
        stored = stored_stock(chain.engine, location_id, warehouse.code)
        assert stored.keys() == served.keys(), f"{location_id}/{warehouse.code}: different SKUs"
        truth = chain.world.truth_catalogue(warehouse.code)
        for sku, row in served.items():
            got = stored[sku]
            wanted = (row["stock"], row["Precio"], row["Iva"])
            assert (got["stock"], got["price_usd"], got["tax_rate"]) == wanted, sku
            assert got["stock"] == truth.stock[sku]
            assert got["price_usd"] == truth.price_usd[sku]
        total += len(stored)
    return total


def assert_products_equal_served(chain: Chain, codes: Iterable[str]) -> None:
    served: dict[str, dict[str, Any]] = {}
    for code in codes:
        served |= served_catalogue(chain.world, code)
    with chain.engine.connect() as conn:
        rows = {r.sku: r for r in conn.execute(select(products))}
    assert rows.keys() == served.keys()
    for sku, row in served.items():
        got = rows[sku]
        assert (got.barcode, got.name, got.brand, got.tax_rate) == (
            _text(row["Barra"]),
            _text(row["NombreProducto"]),
            _text(row["Marca"]),
            row["Iva"],
        ), sku
        assert (got.category_code, got.subcategory_code) == (
            _text(row["Categoria"]),
            _text(row["Subcategoria"]),
        ), sku


def _diff(row: dict[str, Any], expected: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {n: (row.get(n), v) for n, v in expected.items() if row.get(n) != v}


# --- PostgreSQL row versions and table counters --------------------------------------------


def row_versions(engine: Engine, table: str, key: str) -> dict[Any, str]:
    """``xmin`` of every row: an UPDATE (even to equal values) gives the row a new one."""
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(text(f"SELECT {key}, xmin::text FROM {table}"))}


def table_writes(engine: Engine, table: str) -> tuple[int, int, int, int]:
    """(n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del) of ``table``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = conn.execute(
            text(
                "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del "
                "FROM pg_stat_user_tables WHERE relname = :table"
            ),
            {"table": table},
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


@contextmanager
def publishing_pg_stats(engine: Engine) -> Iterator[None]:
    """Make every pooled PostgreSQL connection publish its table counters when it is returned.

    A backend flushes its counters to ``pg_stat_user_tables`` at most once a second unless told
    (PostgreSQL 15+), so a test reading them right after a run could miss the run's writes.
    """

    def flush(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is None:  # invalidated: nothing to publish
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT pg_stat_force_next_flush()")
        finally:
            cursor.close()
        dbapi_connection.commit()

    event.listen(engine.pool, "checkin", flush)
    try:
        yield
    finally:
        event.remove(engine.pool, "checkin", flush)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CARACAS)


def days_before(day: date, n: int) -> date:
    return day - timedelta(days=n)
