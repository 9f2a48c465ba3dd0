"""The simulated article master: one chain-wide list of articles, derived from the seed.

Every warehouse carries the whole list (as KLK does); what differs per warehouse is stock. The
JSON of each article is rendered once here, so a 15,000-article catalogue is assembled from
ready-made bytes and only the stock numbers are formatted per request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from fluxion_etl.sim.vocabulary import (
    DEPARTMENTS,
    SIZE_GRAMS,
    SIZES_UNIT,
    VARIANTS,
    Department,
    Subcategory,
)

NA = "N/A"


@dataclass(frozen=True, slots=True)
class Article:
    """One article; money in US cents, weight in grams, ``weighed`` means sold by KG."""

    index: int
    code: str
    barcode: str
    name: str
    category: str
    subcategory: str
    department: str
    subcategory_name: str
    brand: str
    price_cents: int
    cost_cents: int
    tax: int
    weighed: bool
    weight_grams: int


@dataclass(frozen=True, slots=True)
class ArticleMaster:
    """The articles plus their pre-rendered JSON fragments (catalogue row prefix, sales product)."""

    articles: tuple[Article, ...]
    catalogue_prefixes: tuple[bytes, ...]
    product_fragments: tuple[orjson.Fragment, ...]
    separated_prefixes: tuple[bytes, ...]
    """The row prefixes, each but the first led by the ``,`` that ends the row before: joined
    with the rows' ends, they make the inside of a catalogue's array in one join."""


def build_master(seed: int, count: int) -> ArticleMaster:
    """Derive ``count`` articles from ``seed``; the same arguments always give the same list."""
    rng = random.Random(f"{seed}:articles")
    articles = []
    code = 0
    for index in range(count):
        code += 1 + int(rng.random() ** 3 * 12)
        articles.append(_article(rng, index, code))
    prefixes = tuple(_catalogue_prefix(a) for a in articles)
    return ArticleMaster(
        articles=tuple(articles),
        catalogue_prefixes=prefixes,
        product_fragments=tuple(orjson.Fragment(_product_json(a)) for a in articles),
        separated_prefixes=prefixes[:1] + tuple(b"," + prefix for prefix in prefixes[1:]),
    )


def _article(rng: random.Random, index: int, code: int) -> Article:
    department = DEPARTMENTS[int(rng.random() * len(DEPARTMENTS))]
    sub_index = int(rng.random() * len(department.subcategories))
    sub = department.subcategories[sub_index]
    name, grams = _name(rng, sub)
    low, high = sub.price_cents
    price = low + int(rng.random() * (high - low + 1))
    return Article(
        index=index,
        code=f"{code:06d}",
        barcode=_barcode(rng, code, sub.weighed),
        name=name,
        category=department.code,
        subcategory=NA if rng.random() < 0.03 else f"{department.code}{sub_index + 1:02d}",
        department=department.name,
        subcategory_name=NA if rng.random() < 0.03 else sub.name,
        brand=_brand(rng, department, sub),
        price_cents=price,
        cost_cents=max(1, price * (60 + int(rng.random() * 26)) // 100),
        tax=sub.tax,
        weighed=sub.weighed,
        weight_grams=grams,
    )


def _name(rng: random.Random, sub: Subcategory) -> tuple[str, int]:
    noun = sub.nouns[int(rng.random() * len(sub.nouns))]
    variant = VARIANTS[int(rng.random() * len(VARIANTS))]
    if sub.weighed:
        return " ".join(p for p in (noun, variant, "KG") if p), 1000
    size = SIZES_UNIT[int(rng.random() * len(SIZES_UNIT))]
    return " ".join(p for p in (noun, variant, size) if p), SIZE_GRAMS[size]


def _brand(rng: random.Random, department: Department, sub: Subcategory) -> str:
    if not sub.branded or not department.brands or rng.random() < 0.06:
        return NA
    return department.brands[int(rng.random() * len(department.brands))]


def _barcode(rng: random.Random, code: int, weighed: bool) -> str:
    """An EAN-13 (``759`` = Venezuela; ``2`` = in-store weighed goods), sometimes missing."""
    if rng.random() < 0.04:
        return NA
    body = f"2{code:06d}00000" if weighed else f"759{int(rng.random() * 1e9):09d}"
    digits = [int(c) for c in body]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return f"{body}{check}"


def compact(raw: bytes) -> bytes:
    """A right-sized copy: orjson's bytes keep a multi-KB buffer, too much to cache by thousands."""
    return bytes(memoryview(raw))


def money(cents: int) -> int | float:
    """A JSON number whose literal is exactly ``cents / 100`` (floats print shortest-exact)."""
    return cents // 100 if cents % 100 == 0 else cents / 100


def quantity(milli: int) -> int | float:
    """A JSON number whose literal is exactly ``milli / 1000``."""
    return milli // 1000 if milli % 1000 == 0 else milli / 1000


def _catalogue_prefix(article: Article) -> bytes:
    row = {
        "Codigo": article.code,
        "Barra": article.barcode,
        "NombreProducto": article.name,
        "Categoria": article.category,
        "Subcategoria": article.subcategory,
        "Descripcion": article.department,
        "Descripcion_categoria": article.subcategory_name,
        "Marca": article.brand,
        "Precio": money(article.price_cents),
        "Iva": article.tax,
    }
    return orjson.dumps(row)[:-1] + b',"stock":'


def _product_json(article: Article) -> bytes:
    return compact(
        orjson.dumps(
            {
                "codigo_producto": article.code,
                "descripcion_producto": article.name,
                "marca_producto": article.brand,
                "modelo_producto": "",
                "categoria_producto": article.category,
                "grupo_articulo": article.subcategory_name,
                "subgrupo_producto": article.subcategory,
                "categoria_nombre": article.department,
                "codigo_barras": article.barcode,
                "serial": "",
                "imei": "",
            }
        )
    )
