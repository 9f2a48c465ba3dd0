"""SimWorld: the deterministic chain the simulator serves, and the truth tests compare loads with.

Everything derives from the seed and the simulated clock: the same seed at the same simulated
instant gives the same bytes. Sales of a (location, day) are generated once, on first use, and
kept in a bounded LRU cache; stock is derived from the par levels and that day's sales. Voids are
the only state that accumulates: a line voided at instant T is absent from every answer for T and
later (the triggering response, computed before the void, still has it).

Thread-safe: the ASGI app calls it from worker threads.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from itertools import chain

from fluxion_etl.domain.clock import Clock
from fluxion_etl.domain.records import WarehouseRole
from fluxion_etl.sim.articles import ArticleMaster, build_master
from fluxion_etl.sim.sales import TICKS_PER_SECOND, DayInputs, SalesDay, SoldLine, generate_day
from fluxion_etl.sim.stock import (
    ParLevels,
    StockLiterals,
    day_start_stock,
    par_levels,
    render_stock,
)
from fluxion_etl.sim.topology import SimLocation, SimWarehouse, build_locations, chain_config_toml
from fluxion_etl.sim.truth import CatalogueTruth, SalesTruth, catalogue_truth, sales_truth

LineKey = tuple[str, int]
MAX_DAYS_PER_QUERY = 366
MAX_SKUS = 80_000
"""Codes advance by at most 12, so 80,000 articles keep ``Codigo`` within six digits."""


@dataclass(frozen=True, slots=True)
class SalesFilter:
    """What a ``/ventas`` call selects; times are inclusive bounds in 100 ns ticks of local day."""

    date_from: date
    date_to: date
    warehouse: str | None = None
    article: str | None = None
    ticks_from: int | None = None
    ticks_to: int | None = None


def default_cache_mb(locations: int, lines_per_day: int) -> int:
    """Room for two days of every location (volume varies up to 1.3x), at least 256 MB."""
    return max(256, 2 * locations * int(lines_per_day * 1.3) * 1500 // 10**6)


class SimWorld:
    """The simulated chain at any simulated instant: KLK's rows, and the truth behind them."""

    def __init__(
        self,
        *,
        locations: int = 20,
        skus: int = 4000,
        lines_per_day: int = 2000,
        seed: int = 1,
        clock: Clock,
        start: date | None = None,
        day_cache_mb: int | None = None,
    ) -> None:
        """``start``: the first local day with sales (earlier days have none); None = no limit.

        ``day_cache_mb`` bounds the generated days kept in memory (about 1.5 KB a line); the
        default holds two days of every location, so the current and previous day of a whole
        chain are generated once even at the large scale (about 3 GB at 200 x 5,000 lines).
        """
        for name, value in (
            ("locations", locations),
            ("skus", skus),
            ("day_cache_mb", 1 if day_cache_mb is None else day_cache_mb),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if lines_per_day < 0 or skus > MAX_SKUS:
            raise ValueError(f"lines_per_day must be >= 0 and skus at most {MAX_SKUS:,}")
        self.seed, self.skus, self.lines_per_day = seed, skus, lines_per_day
        self.clock, self.start = clock, start
        self.locations: tuple[SimLocation, ...] = build_locations(locations)
        self._by_id = {loc.id: loc for loc in self.locations}
        self._by_branch = {loc.branch_code: loc for loc in self.locations}
        self._warehouses = {w.code: w for loc in self.locations for w in loc.warehouses}
        self._lock = threading.RLock()
        self._days: OrderedDict[tuple[str, date], SalesDay] = OrderedDict()
        self._day_cache_budget = (
            day_cache_mb or default_cache_mb(locations, lines_per_day)
        ) * 10**6
        self._day_cache_used = 0
        self._par: dict[str, ParLevels] = {}
        self._voids: dict[tuple[str, date], dict[LineKey, datetime]] = {}
        self._last_catalogue: dict[str, datetime] = {}
        self._stock_literals = StockLiterals()

    # -- lookups ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def location(self, location_id: str) -> SimLocation:
        return self._by_id[location_id]

    def location_for_branch(self, branch_code: str) -> SimLocation | None:
        return self._by_branch.get(branch_code)

    def warehouse(self, code: str) -> SimWarehouse | None:
        return self._warehouses.get(code)

    def chain_config_toml(self, count: int | None = None) -> str:
        """A configuration file whose locations match the first ``count`` simulated ones."""
        return chain_config_toml(self.locations[: len(self.locations) if count is None else count])

    @cached_property
    def master(self) -> ArticleMaster:
        return build_master(self.seed, self.skus)

    def warehouse_rows(
        self, *, branch: str | None = None, sales_floor_only: bool = False
    ) -> list[dict[str, str]]:
        """KLK's warehouse list entries, every branch or one."""
        return [
            {
                "NombreSucursal": loc.branch_name,
                "CodigoSucursal": loc.branch_code,
                "CodigoAlmacen": w.code,
                "NombreAlmacen": w.name,
            }
            for loc in self.locations
            if branch is None or loc.branch_code == branch
            for w in loc.warehouses
            if not sales_floor_only or (w.role is WarehouseRole.SALES_FLOOR and loc.sells)
        ]

    # -- sales -----------------------------------------------------------------------------

    def sales_day(self, location_id: str, day: date) -> SalesDay:
        """Every line the location sells on ``day`` (whole day, voids included), cached."""
        key = (location_id, day)
        with self._lock:
            cached = self._days.get(key)
            if cached is not None:
                self._days.move_to_end(key)
                return cached
            generated = self._generate(self._by_id[location_id], day)
            self._days[key] = generated
            self._day_cache_used += generated.size_bytes
            while self._day_cache_used > self._day_cache_budget and len(self._days) > 1:
                self._day_cache_used -= self._days.popitem(last=False)[1].size_bytes
            return generated

    def _generate(self, loc: SimLocation, day: date) -> SalesDay:
        floor = loc.sales_floor
        if floor is None or self.lines_per_day == 0 or (self.start and day < self.start):
            return SalesDay(loc.id, day, 0, (), ())
        principal = loc.warehouse(WarehouseRole.PRINCIPAL)
        inputs = DayInputs(
            seed=self.seed,
            location=loc,
            day=day,
            lines_per_day=self.lines_per_day,
            master=self.master,
            floor=(floor, self._par_levels(floor)),
            principal=(principal, self._par_levels(principal)) if principal else None,
        )
        return generate_day(inputs)

    def sales_lines(
        self, location_id: str, query: SalesFilter, at: datetime | None = None
    ) -> list[SoldLine]:
        """What ``/ventas`` returns at ``at`` (default now): lines sold and not voided by then."""
        at = at or self.now()
        if (query.date_to - query.date_from).days >= MAX_DAYS_PER_QUERY:
            raise ValueError(f"a sales query may span at most {MAX_DAYS_PER_QUERY} days")
        out: list[SoldLine] = []
        day = query.date_from
        while day <= query.date_to:
            out += self._day_lines(location_id, day, at, query)
            day += timedelta(days=1)
        return out

    def _day_lines(
        self, location_id: str, day: date, at: datetime, query: SalesFilter
    ) -> list[SoldLine]:
        cutoff = self._cutoff_ticks(location_id, day, at)
        if cutoff < 0:
            return []
        voided = self._voided_keys(location_id, day, at)
        low = query.ticks_from if query.ticks_from is not None else 0
        high = min(cutoff, query.ticks_to) if query.ticks_to is not None else cutoff
        code = None if query.article is None else query.article
        return [
            line
            for line in self.sales_day(location_id, day).until(high)
            if line.ticks >= low
            and (query.warehouse is None or line.warehouse == query.warehouse)
            and (code is None or self.master.articles[line.article].code == code)
            and line.key not in voided
        ]

    def _cutoff_ticks(self, location_id: str, day: date, at: datetime) -> int:
        """The last tick of ``day`` already past at ``at`` (local time); -1 if the day is ahead."""
        local = at.astimezone(self._by_id[location_id].location.zone)
        if day < local.date():
            return 86_400 * TICKS_PER_SECOND
        if day > local.date():
            return -1
        since_midnight = local.replace(tzinfo=None) - datetime.combine(day, time())
        return (since_midnight // timedelta(microseconds=1)) * 10

    # -- voids -----------------------------------------------------------------------------

    def void_lines(
        self, location_id: str, day: date, keys: Iterable[LineKey], at: datetime | None = None
    ) -> int:
        """Void lines from instant ``at`` (default now) on; returns how many were newly voided."""
        at = at or self.now()
        with self._lock:
            voids = self._voids.setdefault((location_id, day), {})
            new = [key for key in keys if key not in voids]
            for key in new:
                voids[key] = at
            return len(new)

    def _voided_keys(self, location_id: str, day: date, at: datetime) -> set[LineKey]:
        with self._lock:
            voids = self._voids.get((location_id, day), {})
            return {key for key, when in voids.items() if when <= at}

    def voids(self) -> list[tuple[str, date, LineKey, datetime]]:
        with self._lock:
            return [
                (loc, day, key, when)
                for (loc, day), v in self._voids.items()
                for key, when in v.items()
            ]

    # -- stock -----------------------------------------------------------------------------

    def _par_levels(self, warehouse: SimWarehouse) -> ParLevels:
        with self._lock:
            par = self._par.get(warehouse.code)
            if par is None:
                par = par_levels(self.seed, warehouse.code, warehouse.role, self.master.articles)
                self._par[warehouse.code] = par
            return par

    def stock(self, code: str, at: datetime | None = None) -> array[int]:
        """Stock of every article (thousandths) in warehouse ``code`` at ``at`` (default now)."""
        at = at or self.now()
        warehouse = self._warehouses[code]
        loc = self._by_id[warehouse.location_id]
        day = at.astimezone(loc.location.zone).date()
        stock = day_start_stock(
            self.seed, code, day, self._par_levels(warehouse), self.master.articles
        )
        if loc.sells:
            sold = SalesFilter(day, day, warehouse=code)
            for line in self._day_lines(loc.id, day, at, sold):
                stock[line.article] -= line.qty_milli
        return stock

    def catalogue_rows(self, codes: Sequence[str], at: datetime | None = None) -> list[bytes]:
        """The ``articulos`` rows for these warehouses (stock summed over them) at ``at``.

        Unknown codes contribute nothing; no known code gives an empty list, as KLK does.
        """
        total = self._catalogue_stock(codes, at)
        if total is None:
            return []
        prefixes = self.master.catalogue_prefixes
        return [
            prefix + render_stock(milli) + b"}"
            for prefix, milli in zip(prefixes, total, strict=True)
        ]

    def catalogue_array(
        self, codes: Sequence[str], at: datetime | None = None
    ) -> tuple[bytes, int]:
        """``catalogue_rows`` as one JSON array (the same bytes as ``[`` + the rows joined by
        ``,`` + ``]``) and the number of rows. One join of ready pieces, each row's prefix and
        its stock literal from a memo, with no bytes object per row: about three times cheaper
        than the rows, and the simulator's main cost while the ETL it serves shares the cores."""
        total = self._catalogue_stock(codes, at)
        if total is None:
            return b"[]", 0
        pieces = chain.from_iterable(
            zip(
                self.master.separated_prefixes,
                map(self._stock_literals.__getitem__, total),
                strict=True,
            )
        )
        return b"[" + b"".join(pieces) + b"]", len(total)

    def _catalogue_stock(self, codes: Sequence[str], at: datetime | None) -> array[int] | None:
        """Stock of every article summed over the known warehouses of ``codes``, None when no
        code is known; notes the instant as the one last served to each."""
        at = at or self.now()
        known = [c for c in dict.fromkeys(codes) if c in self._warehouses]
        if not known:
            return None
        total = self.stock(known[0], at)
        for code in known[1:]:
            for i, value in enumerate(self.stock(code, at)):
                total[i] += value
        with self._lock:
            for code in known:
                self._last_catalogue[code] = at
        return total

    # -- truth -----------------------------------------------------------------------------

    def truth_sales(
        self,
        location_id: str,
        day: date,
        *,
        warehouse: str | None = None,
        at: datetime | None = None,
    ) -> SalesTruth:
        """The lines a correct load holds for (location, local day) at ``at`` (default now).

        ``warehouse`` defaults to the location's sales floor, the one a correct client asks for.
        """
        at = at or self.now()
        loc = self._by_id[location_id]
        code = warehouse or (loc.sales_floor.code if loc.sales_floor else "")
        lines = self._day_lines(location_id, day, at, SalesFilter(day, day, warehouse=code))
        return sales_truth(
            location_id=location_id,
            day=day,
            warehouse_code=code,
            as_of=at,
            lines=lines,
            master=self.master,
        )

    def truth_catalogue(self, code: str, at: datetime | None = None) -> CatalogueTruth:
        at = at or self.now()
        return catalogue_truth(code, at, self.stock(code, at), self.master)

    def last_catalogue(self, code: str) -> CatalogueTruth | None:
        """The catalogue of ``code`` as last served (recomputed: it is a function of time)."""
        with self._lock:
            served_at = self._last_catalogue.get(code)
        return None if served_at is None else self.truth_catalogue(code, served_at)
