"""Stock levels: each warehouse is restocked to its par level at local midnight, then sells down.

Stock at a simulated instant = par level, adjusted by that day's deliveries and counts (a
deterministic handful of articles per warehouse and day), minus what was sold since midnight up
to that instant (voided lines give their stock back). Cheap by design: nothing accumulates over
days, so any instant's catalogue costs one day of sales at most. All quantities are in thousandths
(``milli``) so weighed goods stay exact.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from datetime import date

from fluxion_etl.domain.records import WarehouseRole
from fluxion_etl.sim.articles import Article

ZERO_SHARE = {WarehouseRole.SALES_FLOOR: 0.5, WarehouseRole.PRINCIPAL: 0.4}
"""About half of a store's catalogue has no stock (SPEC §3); unlisted roles are mostly empty."""
NEGATIVE_SHARE = 0.02
DAILY_ADJUSTED_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class ParLevels:
    """A warehouse's restock levels and its best sellers first (articles with stock to sell)."""

    levels: array[int]
    sellable: tuple[int, ...]


def par_levels(
    seed: int, code: str, role: WarehouseRole, articles: tuple[Article, ...]
) -> ParLevels:
    rng = random.Random(f"{seed}:par:{code}")
    zero_share = ZERO_SHARE.get(role, 0.9)
    levels = array("q", (_level(rng, a, zero_share) for a in articles))
    sellable = [i for i, level in enumerate(levels) if level > 0]
    rng.shuffle(sellable)
    return ParLevels(levels, tuple(sellable))


def _level(rng: random.Random, article: Article, zero_share: float) -> int:
    draw = rng.random()
    if draw < zero_share:
        return 0
    if draw < zero_share + NEGATIVE_SHARE:
        return -_amount(rng, article, 20)
    return _amount(rng, article, 300)


def _amount(rng: random.Random, article: Article, scale: int) -> int:
    if article.weighed:
        return 100 + int(rng.random() ** 2 * scale / 4 * 1000)
    return (1 + int(rng.random() ** 2 * scale)) * 1000


def day_start_stock(
    seed: int, code: str, day: date, par: ParLevels, articles: tuple[Article, ...]
) -> array[int]:
    """The par levels with this day's deliveries and stock counts applied (a new array)."""
    stock = array("q", par.levels)
    rng = random.Random(f"{seed}:adjust:{code}:{day.isoformat()}")
    for _ in range(max(1, int(len(stock) * DAILY_ADJUSTED_SHARE))):
        index = int(rng.random() * len(stock))
        if rng.random() < 0.15:
            stock[index] = 0
        else:
            stock[index] = _amount(rng, articles[index], 300)
    return stock


def render_stock(milli: int) -> bytes:
    """``148``, ``-3.415``, ``12.75``: the literal is exactly ``milli / 1000``."""
    if milli % 1000 == 0:
        return str(milli // 1000).encode()
    return repr(milli / 1000).encode()


class StockLiterals(dict[int, bytes]):
    """``render_stock(milli) + b"}"`` (the end of a catalogue row) by ``milli``, rendered once.

    Stock levels repeat across articles and warehouses (a few tens of thousands of distinct
    values at the ``large`` scale), so lookups, done in C by ``map``, replace most renderings.
    Emptied when it reaches ``MAX`` entries, so a long run cannot grow it without bound."""

    MAX = 500_000

    def __missing__(self, milli: int) -> bytes:
        if len(self) >= self.MAX:
            self.clear()
        literal = self[milli] = render_stock(milli) + b"}"
        return literal
