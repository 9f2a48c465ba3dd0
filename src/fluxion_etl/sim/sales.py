"""One location's sales of one local day, generated from a (seed, location, day) random stream.

A day is generated whole (invoices spread over the store's opening hours, several lines each,
numbered per till) and each line is rendered to KLK's JSON once; callers then filter by time,
warehouse and article. Money is integer cents and quantities integer thousandths, rounded
half-up once per amount, so every total is exactly the sum of its parts:
``venta_total = round(qty * price) - round(that * discount%)`` in both currencies; tax on the
Bs net.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, time
from typing import Any

import orjson

from fluxion_etl.domain.records import OpeningSpan
from fluxion_etl.sim.articles import Article, ArticleMaster, compact, money, quantity
from fluxion_etl.sim.stock import ParLevels
from fluxion_etl.sim.topology import SimLocation, SimWarehouse

TICKS_PER_SECOND = 10_000_000
"""KLK's ``hora`` has 7 fractional digits: SQL Server ``time(7)``, 100 ns ticks."""
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
INVOICES_PER_TILL = 399
NUMBERING_EPOCH = date(2000, 1, 1)
WEEKDAY_FACTOR = (1.0, 0.95, 0.95, 1.0, 1.1, 1.2, 0.85)


@dataclass(frozen=True, slots=True)
class SoldLine:
    """A generated invoice line: the fields callers filter and total on, plus its JSON."""

    day: date
    ticks: int
    warehouse: str
    article: int
    qty_milli: int
    invoice: str
    line: int
    total_usd_cents: int
    total_bs_cents: int
    body: bytes

    @property
    def key(self) -> tuple[str, int]:
        return (self.invoice, self.line)


@dataclass(frozen=True, slots=True)
class SalesDay:
    location_id: str
    day: date
    rate_cents: int
    lines: tuple[SoldLine, ...]
    ticks: tuple[int, ...]

    @property
    def size_bytes(self) -> int:
        """Roughly what this day holds in memory (the JSON plus per-line overhead)."""
        return sum(len(line.body) for line in self.lines) + 250 * len(self.lines)

    def until(self, cutoff_ticks: int) -> tuple[SoldLine, ...]:
        """The lines sold at or before ``cutoff_ticks`` (lines are in time order)."""
        return self.lines[: bisect_right(self.ticks, cutoff_ticks)]


@dataclass(frozen=True, slots=True)
class DayInputs:
    """What one day's generation needs besides the random stream."""

    seed: int
    location: SimLocation
    day: date
    lines_per_day: int
    master: ArticleMaster
    floor: tuple[SimWarehouse, ParLevels]
    principal: tuple[SimWarehouse, ParLevels] | None


def exchange_rate_cents(seed: int, day: date) -> int:
    """Bs per USD, in cents: a steady daily devaluation with a little seeded noise."""
    days = (day - date(2024, 1, 1)).days
    jitter = int(random.Random(f"{seed}:rate:{day.isoformat()}").random() * 81) - 40
    return max(100, 3600 + days * 25 + jitter)


def generate_day(inputs: DayInputs) -> SalesDay:
    loc, day = inputs.location, inputs.day
    rate = exchange_rate_cents(inputs.seed, day)
    spans = _span_ticks(loc.location.opening_hours.spans_on(day))
    if not spans or not inputs.floor[1].sellable:
        return SalesDay(loc.id, day, rate, (), ())
    rng = random.Random(f"{inputs.seed}:sales:{loc.id}:{day.isoformat()}")
    drafts = _invoice_drafts(rng, inputs, spans)
    lines: list[SoldLine] = []
    for invoice, (ticks, warehouse) in zip(
        _invoice_numbers(rng, day, len(drafts)), drafts, strict=True
    ):
        lines += _invoice_lines(
            rng, inputs, rate=rate, invoice=invoice, ticks=ticks, warehouse=warehouse
        )
    lines.sort(key=lambda s: (s.ticks, s.invoice, s.line))
    return SalesDay(loc.id, day, rate, tuple(lines), tuple(s.ticks for s in lines))


def _span_ticks(spans: tuple[OpeningSpan, ...]) -> list[tuple[int, int]]:
    def at(t: time) -> int:
        return (t.hour * 3600 + t.minute * 60 + t.second) * TICKS_PER_SECOND

    return [(at(s.opens), TICKS_PER_DAY if s.ends_at_midnight else at(s.closes)) for s in spans]


def _invoice_drafts(
    rng: random.Random, inputs: DayInputs, spans: list[tuple[int, int]]
) -> list[tuple[int, tuple[SimWarehouse, ParLevels]]]:
    """(time, warehouse) per invoice, in time order; ~3 % are sold from the principal warehouse."""
    weekday = WEEKDAY_FACTOR[inputs.day.weekday()]
    target = inputs.lines_per_day * inputs.location.volume * weekday * (0.9 + 0.2 * rng.random())
    open_ticks = sum(end - start for start, end in spans)
    drafts, expected_lines = [], 0.0
    while expected_lines < target:
        offset = int(rng.random() * open_ticks)
        warehouse = inputs.floor
        if inputs.principal and inputs.principal[1].sellable and rng.random() < 0.03:
            warehouse = inputs.principal
        drafts.append((_at_offset(spans, offset), warehouse))
        expected_lines += 4.4
    drafts.sort(key=lambda d: d[0])
    return drafts


def _at_offset(spans: list[tuple[int, int]], offset: int) -> int:
    for start, end in spans:
        if offset < end - start:
            return start + offset
        offset -= end - start
    return spans[-1][1] - 1


def _invoice_numbers(rng: random.Random, day: date, count: int) -> list[str]:
    """``C10-TT-NNNNNNNN`` per till; the same numbers recur in every store (SPEC §3)."""
    tills = max(3, -(-count // 350))
    used = [0] * tills
    base = max(0, (day - NUMBERING_EPOCH).days) * (INVOICES_PER_TILL + 1)
    numbers = []
    for _ in range(count):
        till = int(rng.random() * tills)
        while used[till] >= INVOICES_PER_TILL:
            till = (till + 1) % tills
        used[till] += 1
        numbers.append(f"C10-{till + 1:02d}-{base + used[till]:08d}")
    return numbers


def _invoice_lines(
    rng: random.Random,
    inputs: DayInputs,
    *,
    rate: int,
    invoice: str,
    ticks: int,
    warehouse: tuple[SimWarehouse, ParLevels],
) -> list[SoldLine]:
    count = 1 + int(rng.random() ** 1.6 * 11)
    non_fiscal = rng.random() < 0.04
    sellable = warehouse[1].sellable
    articles = inputs.master.articles
    picks = [sellable[int(len(sellable) * rng.random() ** 2.2)] for _ in range(count)]
    amounts = [_amounts(rng, articles[i], rate) for i in picks]
    invoice_total = sum(a.net_bs + a.tax_bs for a in amounts)
    shared = _shared_fields(
        day=inputs.day,
        ticks=ticks,
        invoice=invoice,
        warehouse=warehouse[0],
        invoice_total=invoice_total,
        rate=rate,
        non_fiscal=non_fiscal,
    )
    return [
        SoldLine(
            day=inputs.day,
            ticks=ticks,
            warehouse=warehouse[0].code,
            article=index,
            qty_milli=a.qty,
            invoice=invoice,
            line=number,
            total_usd_cents=a.net_usd,
            total_bs_cents=a.net_bs,
            body=compact(orjson.dumps(_line_json(shared, number, inputs.master, index, a))),
        )
        for number, (index, a) in enumerate(zip(picks, amounts, strict=True), start=1)
    ]


@dataclass(frozen=True, slots=True)
class Amounts:
    """Every amount of one line, as integers: cents, thousandths (qty) and percentages."""

    qty: int
    pct: int
    promo_flag: str
    promo_code: str
    unit_cost_bs: int
    unit_price_bs: int
    tax_bs: int
    discount_bs: int
    net_bs: int
    net_usd: int
    cost_bs: int
    cost_usd: int


def _amounts(rng: random.Random, article: Article, rate: int) -> Amounts:
    """Half-up rounding, written inline (``(n + d/2) // d``): every numerator is non-negative."""
    qty = _quantity(rng, article)
    pct, flag, code = _discount(rng, article)
    price_bs = (article.price_cents * rate + 50) // 100
    cost_bs = (article.cost_cents * rate + 50) // 100
    gross_bs = (qty * price_bs + 500) // 1000
    gross_usd = (qty * article.price_cents + 500) // 1000
    discount_bs = (gross_bs * pct + 50) // 100
    net_bs = gross_bs - discount_bs
    return Amounts(
        qty=qty,
        pct=pct,
        promo_flag=flag,
        promo_code=code,
        unit_cost_bs=cost_bs,
        unit_price_bs=price_bs,
        tax_bs=(net_bs * article.tax + 50) // 100,
        discount_bs=discount_bs,
        net_bs=net_bs,
        net_usd=gross_usd - (gross_usd * pct + 50) // 100,
        cost_bs=(qty * cost_bs + 500) // 1000,
        cost_usd=(qty * article.cost_cents + 500) // 1000,
    )


def _quantity(rng: random.Random, article: Article) -> int:
    """Thousandths: 0.100-3.000 KG of weighed goods; mostly 1-2 units, now and then a dozen."""
    if article.weighed:
        return 100 + int(rng.random() * 2900)
    draw = rng.random()
    if draw < 0.6:
        return 1000
    if draw < 0.85:
        return 2000
    return (3 + int(rng.random() * 4)) * 1000 if draw < 0.97 else 12_000


def _discount(rng: random.Random, article: Article) -> tuple[int, str, str]:
    """(percent, ``tiene_promocion``, ``codigo_promocion``): promotions, a few manual discounts."""
    draw = rng.random()
    if draw < 0.07:
        pct = (5, 10, 15, 20)[int(rng.random() * 4)]
        return pct, "S", f"PROMO-{article.department.split()[0]}-{pct}"
    if draw < 0.09:
        return 5, "", ""
    return 0, "", ""


@dataclass(frozen=True, slots=True)
class SharedFields:
    """The fields every line of one invoice repeats."""

    fecha: str
    hora: str
    fecha_hora_completa: str
    invoice: str
    warehouse: SimWarehouse
    invoice_total: int | float
    rate: int | float
    non_fiscal: bool


def _shared_fields(
    *,
    day: date,
    ticks: int,
    invoice: str,
    warehouse: SimWarehouse,
    invoice_total: int,
    rate: int,
    non_fiscal: bool,
) -> SharedFields:
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    hours, rest = divmod(seconds, 3600)
    clock = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return SharedFields(
        fecha=day.isoformat(),
        hora=f"{clock}.{fraction:07d}",
        fecha_hora_completa=f"{day.isoformat()}T{clock}",
        invoice=invoice,
        warehouse=warehouse,
        invoice_total=money(invoice_total),
        rate=money(rate),
        non_fiscal=non_fiscal,
    )


def _line_json(
    f: SharedFields, number: int, master: ArticleMaster, index: int, a: Amounts
) -> dict[str, Any]:
    """One ``ventas[]`` item, keys in KLK's order."""
    article = master.articles[index]
    qty = quantity(a.qty)
    gross_weight = quantity((a.qty * article.weight_grams + 500) // 1000)
    return {
        "numero_factura": f.invoice, "fecha": f.fecha, "hora": f.hora,
        "fecha_hora_completa": f.fecha_hora_completa, "linea": number,
        "producto": [master.product_fragments[index]],
        "cantidad": [{
            "codigo_almacen": f.warehouse.code, "nombre_almacen": f.warehouse.name,
            "cantidad_vendida": qty, "peso_unitario": quantity(article.weight_grams),
            "peso_bruto": gross_weight, "volumen_unitario": 0,
            "unidad_medida_venta": "KG" if article.weighed else "UNIDAD",
            "factor_unidad_medida": 1, "total_cantidad_por_unidad_medida": qty,
            "peso_calculado": gross_weight,
        }],
        "financiero": [{
            "costo_unitario_bs": money(a.unit_cost_bs),
            "costo_unitario_usd": money(article.cost_cents),
            "precio_unitario_bs": money(a.unit_price_bs),
            "precio_unitario_usd": money(article.price_cents),
            "impuesto_porcentaje": article.tax, "impuesto_monto": money(a.tax_bs),
            "porcentaje_descuento": a.pct, "monto_descuento": money(a.discount_bs),
            "venta_total_bs": money(a.net_bs), "venta_total_usd": money(a.net_usd),
            "costo_total_bs": money(a.cost_bs), "costo_total_usd": money(a.cost_usd),
            "utilidad_bruta_bs": money(a.net_bs - a.cost_bs),
            "utilidad_bruta_usd": money(a.net_usd - a.cost_usd),
        }],
        "total_factura": f.invoice_total, "tasa_usd": f.rate, "es_no_fiscal": f.non_fiscal,
        "tiene_promocion": a.promo_flag, "codigo_promocion": a.promo_code,
    }  # fmt: skip
