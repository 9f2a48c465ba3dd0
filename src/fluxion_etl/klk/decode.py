"""Turn KLK response bodies into domain records: pure functions of bytes, all-or-nothing.

A payload is either decoded whole or rejected whole (SPEC §4.4): one undecodable row makes the
response a ``bad_payload``, an ``{"error": ...}`` body is an ``error_body`` and a ``meta`` count
that disagrees with the rows is a ``count_mismatch``. Every failure is a ``KlkError`` carrying the
raw bytes, so the runner can store what KLK sent; arbitrary bytes never raise anything else.

Numbers are decoded by msgspec straight from the JSON literal into ``Decimal`` (never through a
binary float), so ``2.675`` stays ``2.675``. KLK's field names appear only here and in ``wire``.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from itertools import repeat
from operator import attrgetter
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

import msgspec
import xxhash

from fluxion_etl.domain.records import (
    Catalogue,
    CatalogueItem,
    KlkWarehouse,
    KnownArticles,
    KnownLines,
    SalesBatch,
    SalesLine,
)
from fluxion_etl.errors import (
    KlkBadPayloadError,
    KlkCountMismatchError,
    KlkError,
    KlkErrorBodyError,
)
from fluxion_etl.klk import limits, wire

_T = TypeVar("_T")
_W = TypeVar("_W", bound=msgspec.Struct)

# --- public decoders -----------------------------------------------------------------------------


def decode_catalogue(
    body: bytes,
    *,
    warehouse_code: str,
    call: str = "articulos/almacen",
    unchanged_if: str | None = None,
    known: Callable[[], KnownArticles | None] | None = None,
    one_warehouse: bool = True,
) -> Catalogue:
    """Decode ``{"meta", "articulos"}`` (``/maestra/articulos/almacen`` or ``/reposicion``).

    ``one_warehouse``: the catalogue was asked for ``warehouse_code``; one whose meta lists
    other warehouses only (``almacences_filtrados``) is another warehouse's, a bad payload
    (a by-branch catalogue, labelled by the caller, passes False).

    When the article list hashes to ``unchanged_if`` (the digest of the list last loaded, see
    ``catalogue_digest``) the articles are not decoded: the result says ``unchanged`` and has no
    items. The envelope is still read whole: an error body is still an error.

    Otherwise, with ``known`` (what the warehouse holds, asked for only then; None when that
    cannot be said), only the articles whose fingerprint no stored row has are decoded
    (``Catalogue.kept``/``gone``; see ``_changed_articles``). Every record carries its
    article's fingerprint.
    """
    with _bad_payload_guard(call, body):
        return _catalogue(
            body, warehouse_code, call, unchanged_if, known, one_warehouse=one_warehouse
        )


# Part of every digest: change it whenever a change to decoding or loading a catalogue would
# store different rows from the same bytes, so that every catalogue is loaded whole once more.
CATALOGUE_DIGEST_VERSION = b"fluxion-catalogue-3\n"


def article_fingerprints(articles: Sequence[msgspec.Raw]) -> list[int]:
    """A 64-bit fingerprint of each article exactly as sent (its raw JSON object), as the
    database keeps it (a signed ``BIGINT``): XXH3, shifted from unsigned to signed range.

    Two articles with the same bytes decode to the same record; equal fingerprints say, but for
    a 2⁻⁶⁴ chance, that the bytes are equal (KLK is not an adversary: a non-cryptographic hash
    fits, and is ten times cheaper than SHA-256 on 15,000 short objects). Changing it only costs
    one whole decode of each catalogue: no stored fingerprint matches."""
    xxh3 = xxhash.xxh3_64_intdigest
    return [xxh3(raw) - _SIGNED_SHIFT for raw in articles]


_SIGNED_SHIFT = 1 << 63


def catalogue_digest(fingerprints: Sequence[int], declared: int) -> str:
    """The digest of a catalogue's article list (the fingerprints of its articles, in order) and
    of the count its meta declares: a list is only skipped with the count it was checked
    against."""
    digest = hashlib.blake2b(CATALOGUE_DIGEST_VERSION, digest_size=20)
    digest.update(b"%d\n" % declared)
    values = array("q", fingerprints)
    if sys.byteorder == "big":  # the same digest on every machine: little-endian
        values.byteswap()
    digest.update(values.tobytes())
    return digest.hexdigest()


def catalogue_warehouses(body: bytes, *, call: str = "articulos/reposicion") -> tuple[str, ...]:
    """The warehouse codes a catalogue response says it covers (``meta.almacences_filtrados``).

    Needed for by-branch catalogues, whose request names a branch, not a warehouse.
    """
    with _bad_payload_guard(call, body):
        top = _envelope(body, call)
        meta = _decode_part(top, "meta", wire.CatalogueMeta)
        return _filtered_codes(meta.almacences_filtrados)


def decode_sales(
    body: bytes,
    *,
    warehouse_code: str,
    zone: ZoneInfo,
    call: str = "ventas",
    seed: int | None = None,
    known: Callable[[], KnownLines | None] | None = None,
) -> SalesBatch:
    """Decode ``{"meta", "ventas"}`` of one warehouse; times are read in ``zone``, kept in UTC.

    With ``seed`` every line carries its fingerprint: its bytes exactly as sent, hashed with the
    seed (``line_fingerprints``). With ``known`` too (the stored lines the response may send
    again, asked for only when it can help), the lines whose fingerprint a stored line has are
    not decoded: ``SalesBatch.kept`` counts them, ``lines`` holds the others. A scheduled window
    re-reads the hour before it (the overlap), so most of its lines are such lines.
    """
    with _bad_payload_guard(call, body):
        return _sales(body, warehouse_code, zone, call, seed=seed, known=known)


def line_fingerprints(lines: Sequence[msgspec.Raw], seed: int) -> list[int]:
    """A 64-bit fingerprint of each sales line exactly as sent, in the database's signed
    ``BIGINT`` range: XXH3 with ``seed`` (see ``article_fingerprints``). Equal fingerprints say,
    but for a 2⁻⁶⁴ chance, that the bytes and the seed are equal."""
    xxh3 = xxhash.xxh3_64_intdigest
    return [xxh3(raw, seed) - _SIGNED_SHIFT for raw in lines]


def decode_warehouses(body: bytes, call: str) -> list[KlkWarehouse]:
    """Decode a ``/maestra/almacenes/...`` list."""
    with _bad_payload_guard(call, body):
        kind = list[wire.Warehouse] | dict[str, Any]
        try:
            rows = _decoder(kind).decode(_without_bom(body))
        except msgspec.ValidationError as exc:
            raise _located(exc, "$") from None
        if isinstance(rows, dict):
            _raise_error_body(rows, call, body)
            raise wire.Invalid("$", "expected a list of warehouses, got an object")
        _reject_nul_text(body, rows, "$")
        return [_warehouse(row, f"$[{i}]") for i, row in enumerate(rows)]


# --- catalogue -----------------------------------------------------------------------------------


def _catalogue(
    body: bytes,
    warehouse_code: str,
    call: str,
    unchanged_if: str | None = None,
    known: Callable[[], KnownArticles | None] | None = None,
    *,
    one_warehouse: bool = True,
) -> Catalogue:
    # The general way is called from here, not from a helper: a body's nesting limit counts
    # Python frames, and stays what it was before the one-pass read.
    envelope = _one_pass_envelope(body)
    top: dict[str, msgspec.Raw] | None = None
    if envelope is None:
        top = general = _envelope(body, call)
        meta = _decode_part(general, "meta", wire.CatalogueMeta)
        articles = general.get("articulos")
        raws = None if articles is None else _raw_items(articles)
    else:
        raws = envelope.articulos
        meta = _one_pass_meta(envelope)
    _check_listed(meta, warehouse_code if one_warehouse else None)
    generated_at = _generated_at(meta.fecha_generacion, None)
    # Not a JSON array: no digest, and the whole decode below says what is wrong.
    fingerprints = None if raws is None else article_fingerprints(raws)
    digest = None if fingerprints is None else catalogue_digest(fingerprints, meta.total_articulos)
    if digest is not None and digest == unchanged_if:
        return Catalogue(
            warehouse_code=warehouse_code,
            items=(),
            generated_at=generated_at,
            digest=digest,
            unchanged=True,
        )
    held = None
    if fingerprints is not None and known is not None and meta.total_articulos == len(fingerprints):
        held = known()
    if raws is not None and fingerprints is not None and held is not None:
        changed = _changed_articles(raws, fingerprints, held)
        if changed is not None:
            changed_items, kept, gone, duplicates = changed
            return Catalogue(
                warehouse_code=warehouse_code,
                items=changed_items,
                generated_at=generated_at,
                duplicates_removed=duplicates,
                digest=digest,
                kept=kept,
                gone=gone,
            )
    if top is not None:
        rows = _decode_part(top, "articulos", list[wire.Article])
    else:
        rows = _joined_articles(cast(list[msgspec.Raw], raws))
    if meta.total_articulos != len(rows):
        raise KlkCountMismatchError(call, meta.total_articulos, len(rows), raw=body)
    _reject_nul_text(body, rows, "$.articulos")
    if fingerprints is not None:
        for row, fingerprint in zip(rows, fingerprints, strict=True):
            row.fingerprint = fingerprint
    items = _catalogue_items(rows) if wire.all_plausible(rows, wire.Article) else None
    if items is None:  # a bad number or a missing code: decode row by row to name the first
        items = _catalogue_items_row_by_row(rows)
    return Catalogue(
        warehouse_code=warehouse_code,
        items=tuple(items.values()),
        generated_at=generated_at,
        duplicates_removed=len(rows) - len(items),
        digest=digest,
    )


def _one_pass_envelope(body: bytes) -> wire.CatalogueEnvelope | None:
    """The body read in one pass (``meta`` and each article's bytes), or None when it is not a
    catalogue of the usual shape: anything else (an error body, a missing key or another one,
    articles that are not an array, bytes that do not parse) is read the general way, a dict of
    the envelope's parts, so that it fails exactly as any other call's body."""
    try:
        envelope: wire.CatalogueEnvelope = _decoder(wire.CatalogueEnvelope).decode(
            _without_bom(body)
        )
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if envelope.articulos is None or not envelope.meta or envelope.error:
        return None
    return envelope


def _one_pass_meta(envelope: wire.CatalogueEnvelope) -> wire.CatalogueMeta:
    try:
        return cast(wire.CatalogueMeta, _decoder(wire.CatalogueMeta).decode(envelope.meta))
    except msgspec.ValidationError as exc:
        raise _located(exc, "$.meta") from None


def _joined_articles(raws: list[msgspec.Raw]) -> list[wire.Article]:
    """Every article decoded from the bytes of each, as one array (positions as sent)."""
    return _joined(raws, wire.Article, "$.articulos")


def _joined(raws: list[msgspec.Raw], kind: type[_W], at: str) -> list[_W]:
    """Every item decoded from the bytes of each, as one array (``at``: where they were)."""
    try:
        return cast(
            list[_W],
            _decoder(list[kind]).decode(b"[" + b",".join(cast(list[bytes], raws)) + b"]"),  # type: ignore[valid-type]
        )
    except msgspec.ValidationError as exc:
        raise _located(exc, at) from None


def _raw_items(part: msgspec.Raw) -> list[msgspec.Raw] | None:
    """Each item's bytes, or None when ``part`` is not a JSON array (the typed decode then
    says what is wrong)."""
    try:
        return cast(list[msgspec.Raw], _decoder(list[msgspec.Raw]).decode(part))
    except msgspec.ValidationError:
        return None


# Anything that goes wrong decoding a subset sends the caller to the whole decode, which names
# the offending row by its position in the whole body.
_SHORTCUT_FAILURES = (
    msgspec.MsgspecError,
    wire.Invalid,
    KlkError,
    UnicodeDecodeError,
    RecursionError,
    ValueError,
    OverflowError,
)


def _changed_articles(
    raws: list[msgspec.Raw], fingerprints: list[int], known: KnownArticles
) -> tuple[tuple[CatalogueItem, ...], int, tuple[str, ...], int] | None:
    """(new or changed items, kept, gone, duplicates removed), decoding only the articles whose
    fingerprint is not a stored row's; the others are stored exactly as sent.

    None, and the caller decodes the whole catalogue, whenever the shortcut could disagree with
    it: most articles changed (the whole decode is then as cheap), an article repeated, a changed
    article with the sku of a kept one (which one wins depends on their order), or anything
    wrong with a changed article (the whole decode names the first bad row by its position).
    """
    stored = known.by_fingerprint
    changed = [i for i, fingerprint in enumerate(fingerprints) if fingerprint not in stored]
    if 2 * len(changed) > len(raws) or len(set(fingerprints)) != len(fingerprints):
        return None
    kept = {stored[f] for f in fingerprints if f in stored}
    subset = b"[" + b",".join([raws[i] for i in changed]) + b"]"
    try:
        rows = _decoder(list[wire.Article]).decode(subset)
        if not wire.all_plausible(rows, wire.Article):
            return None
        _reject_nul_text(subset, rows, "$")
        for row, i in zip(rows, changed, strict=True):
            row.fingerprint = fingerprints[i]
        items = _catalogue_items(rows)
    except _SHORTCUT_FAILURES:  # the whole decode says what is wrong, and where
        return None
    if items is None or not kept.isdisjoint(items):
        return None
    gone = tuple(sorted(known.skus - kept - items.keys()))
    return tuple(items.values()), len(kept), gone, len(rows) - len(items)


def _catalogue_items(rows: list[wire.Article]) -> dict[str, CatalogueItem] | None:
    """The articles by sku (a repeated sku: the first wins), or None when a row lacks its code.

    The hot path of a catalogue (15,000 articles per warehouse, every 30 minutes): texts are
    cleaned in place on the wire structs in one loop without calls (the category and brand
    texts, which every catalogue repeats, through one memo per field), then msgspec builds the
    records from the structs' attributes (same names) in C, several times faster than the
    records' own frozen ``__init__``. Widths are checked on the memos for the repeated fields.
    """
    null = wire.NULL_TEXTS
    memos = {name: _Texts() for name in _REPEATED_ARTICLE_TEXTS}
    codes, subcodes = memos["category_code"], memos["subcategory_code"]
    names, subnames, brands = (
        memos["category_name"],
        memos["subcategory_name"],
        memos["brand"],
    )
    for row in rows:
        sku = row.sku.strip()
        if sku in null:
            return None
        row.sku = sku
        if (text := row.barcode) is not None:
            row.barcode = None if (text := text.strip()) in null else text
        if (text := row.name) is not None:
            row.name = None if (text := text.strip()) in null else text
        row.category_code = codes[row.category_code]
        row.subcategory_code = subcodes[row.subcategory_code]
        row.category_name = names[row.category_name]
        row.subcategory_name = subnames[row.subcategory_name]
        row.brand = brands[row.brand]
    records = _articles_to_items(rows)
    skus = [item.sku for item in records]
    if len(set(skus)) == len(skus):
        items = dict(zip(skus, records, strict=True))
    else:
        items = {}
        for item in records:
            items.setdefault(item.sku, item)
    repeated_fit = all(
        limits.longest(memos[name].values()) <= limits.CATALOGUE_WIDTHS[name][1]
        for name in _REPEATED_ARTICLE_TEXTS
    )
    widths = _UNIQUE_ARTICLE_WIDTHS if repeated_fit else limits.CATALOGUE_WIDTHS
    limits.check_widths(list(items.values()), widths, locate=_article_locator(rows))
    return items


_REPEATED_ARTICLE_TEXTS = (
    "category_code",
    "subcategory_code",
    "category_name",
    "subcategory_name",
    "brand",
)
# The fields of CATALOGUE_WIDTHS (in its order, so the first too-wide field is the same) that
# the memos do not cover.
_UNIQUE_ARTICLE_WIDTHS = {
    name: width
    for name, width in limits.CATALOGUE_WIDTHS.items()
    if name not in _REPEATED_ARTICLE_TEXTS
}


def _catalogue_items_row_by_row(rows: list[wire.Article]) -> dict[str, CatalogueItem]:
    """Every row through ``_article`` with its numbers checked: raises on the first bad value."""
    texts = _Texts()
    items: dict[str, CatalogueItem] = {}
    for index, row in enumerate(rows):
        item = _article(row, f"$.articulos[{index}]", check=True, texts=texts)
        items.setdefault(item.sku, item)
    limits.check_widths(
        list(items.values()), limits.CATALOGUE_WIDTHS, locate=_article_locator(rows)
    )
    return items


def _article_locator(rows: list[wire.Article]) -> Callable[[CatalogueItem], str]:
    return lambda item: _row_path(
        rows, "$.articulos", lambda row: wire.optional_text(row.sku) == item.sku
    )


_ITEMS_LOCK = threading.Lock()
_items_ready = False


def _articles_to_items(rows: list[wire.Article]) -> list[CatalogueItem]:
    """``msgspec.convert`` of the structs into records; its first use (which builds msgspec's
    plan for the record type) runs under a lock, as the decoders' does (see ``_decoder``)."""
    global _items_ready  # noqa: PLW0603 - a once-only flag
    if not _items_ready:
        with _ITEMS_LOCK:
            if not _items_ready:
                items = _convert_articles(rows)
                _items_ready = True
                return items
    return _convert_articles(rows)


def _convert_articles(rows: list[wire.Article]) -> list[CatalogueItem]:
    return msgspec.convert(rows, list[CatalogueItem], from_attributes=True)


def _article(
    row: wire.Article, at: str, *, check: bool = True, texts: _Texts | None = None
) -> CatalogueItem:
    """One article; the texts every catalogue repeats (categories, brands) go through the memo,
    the ones unique to an article (barcode, name) do not."""
    if check:
        wire.check_numbers(row, at)
    t = _Texts() if texts is None else texts
    return CatalogueItem(
        sku=_required(t, row.sku, at, ".Codigo"),
        barcode=wire.optional_text(row.barcode),
        name=wire.optional_text(row.name),
        category_code=t[row.category_code],
        subcategory_code=t[row.subcategory_code],
        category_name=t[row.category_name],
        subcategory_name=t[row.subcategory_name],
        brand=t[row.brand],
        price_usd=row.price_usd,
        tax_rate=row.tax_rate,
        stock=row.stock,
        fingerprint=row.fingerprint,
    )


def _check_listed(meta: wire.CatalogueMeta, warehouse_code: str | None) -> None:
    """A catalogue whose meta names warehouses, none of them the one asked for, is another
    warehouse's: loading it would replace this warehouse's stock with that one's. (None: the
    catalogue was not asked for one warehouse.)"""
    if warehouse_code is None:
        return
    listed = _filtered_codes(meta.almacences_filtrados)
    if listed and warehouse_code not in listed:
        raise wire.Invalid(
            "$.meta.almacences_filtrados",
            f"lists {', '.join(listed)}, not {warehouse_code}, the warehouse asked for",
        )


def _filtered_codes(value: Any) -> tuple[str, ...]:
    """``almacences_filtrados`` is a JSON list inside a string; tolerate absence and odd forms."""
    if isinstance(value, str):
        try:
            value = msgspec.json.decode(value.encode())
        except msgspec.DecodeError:
            value = [value]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(code.strip() for code in value if isinstance(code, str) and code.strip())


# --- sales ---------------------------------------------------------------------------------------


def _sales(
    body: bytes,
    warehouse_code: str,
    zone: ZoneInfo,
    call: str,
    *,
    seed: int | None = None,
    known: Callable[[], KnownLines | None] | None = None,
) -> SalesBatch:
    top = _envelope(body, call)
    meta = _decode_part(top, "meta", wire.SalesMeta)
    # Not a JSON array: no fingerprints, and the whole decode below says what is wrong.
    raws = None if seed is None or "ventas" not in top else _raw_items(top["ventas"])
    fingerprints = None if raws is None or seed is None else line_fingerprints(raws, seed)
    if (
        raws is not None
        and fingerprints
        and known is not None
        and meta.total_registros == len(raws)
        and len(set(fingerprints)) == len(fingerprints)
    ):
        held = known()
        changed = (
            None if held is None else _changed_lines(raws, fingerprints, held, warehouse_code, zone)
        )
        if changed is not None:
            decoded, kept, duplicates = changed
            return SalesBatch(
                warehouse_code=warehouse_code,
                lines=decoded,
                declared_count=meta.total_registros,
                duplicates_removed=duplicates,
                generated_at=_generated_at(meta.fecha_generacion, zone),
                extra=_echoed_filters(top),
                kept=kept,
            )
    if raws is not None:
        rows = _joined(raws, wire.Sale, "$.ventas")
    else:
        rows = _decode_part(top, "ventas", list[wire.Sale])
    if meta.total_registros != len(rows):
        raise KlkCountMismatchError(call, meta.total_registros, len(rows), raw=body)
    _reject_nul_text(body, rows, "$.ventas")
    lines = _checked_sales_lines(rows, warehouse_code, zone, fingerprints, at="$.ventas")
    return SalesBatch(
        warehouse_code=warehouse_code,
        lines=tuple(lines.values()),
        declared_count=meta.total_registros,
        duplicates_removed=len(rows) - len(lines),
        generated_at=_generated_at(meta.fecha_generacion, zone),
        extra=_echoed_filters(top),
    )


def _checked_sales_lines(
    rows: list[wire.Sale],
    warehouse_code: str,
    zone: ZoneInfo,
    fingerprints: Sequence[int] | None,
    *,
    at: str,
) -> dict[tuple[str, int], SalesLine]:
    """The lines by key, every value checked; raises naming the first bad one (``at``: the
    JSONPath of ``rows``)."""
    plausible = _sales_numbers_plausible(rows)
    texts = _Texts()
    lines = _sales_lines(rows, warehouse_code, zone, texts, fingerprints) if plausible else None
    if lines is None:  # something is wrong: row by row names the first bad value
        texts = _Texts()
        lines = _sales_lines_row_by_row(
            rows, warehouse_code, zone, texts, fingerprints, check=not plausible, at=at
        )
    limits.check_widths(
        list(lines.values()),
        limits.SALES_WIDTHS,
        locate=lambda line: _row_path(
            rows,
            at,
            lambda row: (wire.optional_text(row.numero_factura), row.linea) == line.key,
        ),
        longest_seen=limits.longest(texts.values()),  # every text of a sales line is memoised
    )
    return lines


def _changed_lines(
    raws: list[msgspec.Raw],
    fingerprints: list[int],
    known: KnownLines,
    warehouse_code: str,
    zone: ZoneInfo,
) -> tuple[tuple[SalesLine, ...], int, int] | None:
    """(new or changed lines, kept, duplicates removed), decoding only the lines whose
    fingerprint is not a stored line's; the others are stored exactly as sent.

    None, and the caller decodes every line, whenever the shortcut could disagree with that:
    most lines changed (the whole decode is then as cheap), a changed line with the key of a
    kept one (which one wins depends on their order), or anything wrong with a changed line
    (the whole decode names the first bad one by its position). The caller has checked that no
    fingerprint repeats and that the meta's count is the number of lines.
    """
    stored = known.by_fingerprint
    changed = [i for i, fingerprint in enumerate(fingerprints) if fingerprint not in stored]
    if 2 * len(changed) > len(raws):
        return None
    kept = {stored[f] for f in fingerprints if f in stored}
    subset = b"[" + b",".join([raws[i] for i in changed]) + b"]"
    try:
        rows = _decoder(list[wire.Sale]).decode(subset)
        _reject_nul_text(subset, rows, "$")
        lines = _checked_sales_lines(
            rows, warehouse_code, zone, [fingerprints[i] for i in changed], at="$"
        )
    except _SHORTCUT_FAILURES:  # the whole decode says what is wrong, and where
        return None
    if not kept.isdisjoint(lines):
        return None
    return tuple(lines.values()), len(kept), len(rows) - len(lines)


def _sales_lines_row_by_row(
    rows: list[wire.Sale],
    warehouse_code: str,
    zone: ZoneInfo,
    texts: _Texts,
    fingerprints: Sequence[int] | None = None,
    *,
    check: bool,
    at: str = "$.ventas",
) -> dict[tuple[str, int], SalesLine]:
    """Every row through ``_sales_line``: raises on the first bad value, naming it."""
    instants: dict[tuple[date, str], datetime] = {}  # an invoice's lines share their time
    lines: dict[tuple[str, int], SalesLine] = {}
    prints = repeat(None) if fingerprints is None else fingerprints
    for index, (row, fingerprint) in enumerate(zip(rows, prints, strict=False)):
        path = f"{at}[{index}]"
        line = _sales_line(
            row, path, zone, check=check, instants=instants, texts=texts, fingerprint=fingerprint
        )
        if line.warehouse_code != warehouse_code:
            raise wire.Invalid(
                f"{path}.cantidad[0].codigo_almacen",
                f"line of warehouse {line.warehouse_code!r} in a response for {warehouse_code!r} "
                "(KLK merged warehouses)",
            )
        lines.setdefault(line.key, line)
    return lines


_SALES_CHUNK = 512  # lines per msgspec.convert: the drafts (one dict a line) stay a few hundred KB


def _sales_lines(
    rows: list[wire.Sale],
    warehouse_code: str,
    zone: ZoneInfo,
    texts: _Texts,
    fingerprints: Sequence[int] | None = None,
) -> dict[tuple[str, int], SalesLine] | None:
    """The lines by key (a repeated key: the first wins), or None when any row is not plainly
    valid (an empty array, a missing code, a line of another warehouse, a bad line number, time,
    date or flag): the caller then decodes row by row to name the first bad value.

    The hot path of sales (a million lines per ``large`` cycle): one loop without calls but the
    memos' misses builds a dict per line, and msgspec builds the records from the dicts in C,
    several times faster than the records' frozen ``__init__`` (44 fields). Numbers were checked
    for the whole payload already (``_sales_numbers_plausible``).
    """
    t, flags = texts, _Flags()
    instants: dict[tuple[date, str], datetime] = {}
    records: list[SalesLine] = []
    drafts: list[dict[str, Any]] = []
    prints = repeat(None) if fingerprints is None else fingerprints
    try:
        for row, fingerprint in zip(rows, prints, strict=False):
            if not (row.producto and row.cantidad and row.financiero):
                return None
            product, quantity, money = row.producto[0], row.cantidad[0], row.financiero[0]
            invoice, sku = t[row.numero_factura], t[product.codigo_producto]
            line = row.linea
            if (
                invoice is None
                or sku is None
                or t[quantity.codigo_almacen] != warehouse_code
                or not 0 <= line <= wire.MAX_LINE_NUMBER
            ):
                return None
            sold_at = instants.get((row.fecha, row.hora))
            if sold_at is None:
                sold_at = instants[(row.fecha, row.hora)] = _sold_at(row.fecha, row.hora, zone, "$")
            drafts.append(
                {
                    "invoice_number": invoice,
                    "line_number": line,
                    "sold_at": sold_at,
                    "business_day": row.fecha,
                    "sku": sku,
                    "product_description": t[product.descripcion_producto],
                    "brand": t[product.marca_producto],
                    "model": t[product.modelo_producto],
                    "category_code": t[product.categoria_producto],
                    "group_name": t[product.grupo_articulo],
                    "subgroup_code": t[product.subgrupo_producto],
                    "category_name": t[product.categoria_nombre],
                    "barcode": t[product.codigo_barras],
                    "serial": t[product.serial],
                    "imei": t[product.imei],
                    "warehouse_code": warehouse_code,
                    "warehouse_name": t[quantity.nombre_almacen],
                    "quantity": quantity.cantidad_vendida,
                    "unit_weight": quantity.peso_unitario,
                    "gross_weight": quantity.peso_bruto,
                    "unit_volume": quantity.volumen_unitario,
                    "sales_unit": t[quantity.unidad_medida_venta],
                    "unit_factor": quantity.factor_unidad_medida,
                    "quantity_in_units": quantity.total_cantidad_por_unidad_medida,
                    "computed_weight": quantity.peso_calculado,
                    "unit_cost_bs": money.costo_unitario_bs,
                    "unit_cost_usd": money.costo_unitario_usd,
                    "unit_price_bs": money.precio_unitario_bs,
                    "unit_price_usd": money.precio_unitario_usd,
                    "tax_rate": money.impuesto_porcentaje,
                    "tax_amount_bs": money.impuesto_monto,
                    "discount_rate": money.porcentaje_descuento,
                    "discount_amount_bs": money.monto_descuento,
                    "total_bs": money.venta_total_bs,
                    "total_usd": money.venta_total_usd,
                    "total_cost_bs": money.costo_total_bs,
                    "total_cost_usd": money.costo_total_usd,
                    "gross_profit_bs": money.utilidad_bruta_bs,
                    "gross_profit_usd": money.utilidad_bruta_usd,
                    "invoice_total_bs": row.total_factura,
                    "exchange_rate": row.tasa_usd,
                    "is_non_fiscal": flags[row.es_no_fiscal],
                    "has_promotion": flags[row.tiene_promocion],
                    "promotion_code": t[row.codigo_promocion],
                    "fingerprint": fingerprint,
                }
            )
            if len(drafts) == _SALES_CHUNK:
                records += _drafts_to_lines(drafts)
                drafts = []
    except wire.Invalid:
        return None
    records += _drafts_to_lines(drafts)
    return _first_per_key(records)


def _first_per_key(records: list[SalesLine]) -> dict[tuple[str, int], SalesLine]:
    keys = list(map(_line_key, records))
    if len(set(keys)) == len(keys):
        return dict(zip(keys, records, strict=True))
    lines: dict[tuple[str, int], SalesLine] = {}
    for key, record in zip(keys, records, strict=True):
        lines.setdefault(key, record)
    return lines


_line_key = attrgetter("invoice_number", "line_number")


class _Flags(dict[bool | str | None, bool]):
    """``wire.parse_flag`` once per distinct spelling of a payload (raises ``wire.Invalid``)."""

    def __missing__(self, key: bool | str | None) -> bool:
        value = self[key] = wire.parse_flag(key, "$")
        return value


_LINES_LOCK = threading.Lock()
_lines_ready = False


def _drafts_to_lines(drafts: list[dict[str, Any]]) -> list[SalesLine]:
    """``msgspec.convert`` of the drafts into records; its first use (which builds msgspec's
    plan for the record type) runs under a lock, as the decoders' does (see ``_decoder``)."""
    global _lines_ready  # noqa: PLW0603 - a once-only flag
    if not _lines_ready:
        with _LINES_LOCK:
            if not _lines_ready:
                lines = msgspec.convert(drafts, list[SalesLine])
                _lines_ready = True
                return lines
    return msgspec.convert(drafts, list[SalesLine])


def _row_path(rows: Sequence[_W], at: str, matches: Callable[[_W], bool]) -> str:
    """The JSONPath of the first row ``matches`` (only built for an error)."""
    index = next((i for i, row in enumerate(rows) if matches(row)), None)
    return at if index is None else f"{at}[{index}]"


def _sales_numbers_plausible(rows: Sequence[wire.Sale]) -> bool:
    """Every number of every line passes ``wire.is_plausible`` (one fast pass per struct kind;
    lines with an empty array are left to the row-by-row decoding, which refuses them)."""
    quantities = [row.cantidad[0] for row in rows if row.cantidad]
    money = [row.financiero[0] for row in rows if row.financiero]
    return (
        wire.all_plausible(rows, wire.Sale)
        and wire.all_plausible(quantities, wire.Quantity)
        and wire.all_plausible(money, wire.Financial)
    )


class _Texts(dict[str | None, str | None]):
    """``wire.optional_text`` once per distinct value of a payload: names, brands, categories
    and codes repeat on thousands of rows, and a dict hit costs less than the call."""

    def __init__(self) -> None:
        super().__init__({None: None})

    def __missing__(self, key: str | None) -> str | None:
        value = self[key] = wire.optional_text(key)
        return value


def _required(texts: _Texts, value: str, at: str, field: str) -> str:
    """``wire.required_code`` through the memo; the path is only built for an error."""
    code = texts[value]
    if code is None:
        return wire.required_code(value, at + field)  # raises, naming the value
    return code


def _flag(value: bool | str | None, at: str, field: str) -> bool:
    if value is True or value is False:
        return value
    return wire.parse_flag(value, at + field)


def _sales_line(
    row: wire.Sale,
    at: str,
    zone: ZoneInfo,
    *,
    check: bool = True,
    instants: dict[tuple[date, str], datetime] | None = None,
    texts: _Texts | None = None,
    fingerprint: int | None = None,
) -> SalesLine:
    """One line, fields in the record's order (so the first bad field is the one reported).

    The hot loop of decoding (a million lines per cycle at 10x the chain): no intermediate
    dicts, memoised texts and times, and JSONPaths built only when something is wrong.
    """
    t = _Texts() if texts is None else texts
    product = (
        row.producto[0] if row.producto else wire.first_element(row.producto, at + ".producto")
    )
    quantity = (
        row.cantidad[0] if row.cantidad else wire.first_element(row.cantidad, at + ".cantidad")
    )
    money = (
        row.financiero[0]
        if row.financiero
        else wire.first_element(row.financiero, at + ".financiero")
    )
    if check:
        for part, where in (
            (row, at),
            (quantity, f"{at}.cantidad[0]"),
            (money, f"{at}.financiero[0]"),
        ):
            wire.check_numbers(part, where)
    line = row.linea
    return SalesLine(
        invoice_number=_required(t, row.numero_factura, at, ".numero_factura"),
        line_number=line
        if 0 <= line <= wire.MAX_LINE_NUMBER
        else wire.checked_line_number(line, f"{at}.linea"),
        sold_at=_sold_at_once(row.fecha, row.hora, zone, at, {} if instants is None else instants),
        business_day=row.fecha,
        sku=_required(t, product.codigo_producto, at, ".producto[0].codigo_producto"),
        product_description=t[product.descripcion_producto],
        brand=t[product.marca_producto],
        model=t[product.modelo_producto],
        category_code=t[product.categoria_producto],
        group_name=t[product.grupo_articulo],
        subgroup_code=t[product.subgrupo_producto],
        category_name=t[product.categoria_nombre],
        barcode=t[product.codigo_barras],
        serial=t[product.serial],
        imei=t[product.imei],
        warehouse_code=_required(t, quantity.codigo_almacen, at, ".cantidad[0].codigo_almacen"),
        warehouse_name=t[quantity.nombre_almacen],
        quantity=quantity.cantidad_vendida,
        unit_weight=quantity.peso_unitario,
        gross_weight=quantity.peso_bruto,
        unit_volume=quantity.volumen_unitario,
        sales_unit=t[quantity.unidad_medida_venta],
        unit_factor=quantity.factor_unidad_medida,
        quantity_in_units=quantity.total_cantidad_por_unidad_medida,
        computed_weight=quantity.peso_calculado,
        unit_cost_bs=money.costo_unitario_bs,
        unit_cost_usd=money.costo_unitario_usd,
        unit_price_bs=money.precio_unitario_bs,
        unit_price_usd=money.precio_unitario_usd,
        tax_rate=money.impuesto_porcentaje,
        tax_amount_bs=money.impuesto_monto,
        discount_rate=money.porcentaje_descuento,
        discount_amount_bs=money.monto_descuento,
        total_bs=money.venta_total_bs,
        total_usd=money.venta_total_usd,
        total_cost_bs=money.costo_total_bs,
        total_cost_usd=money.costo_total_usd,
        gross_profit_bs=money.utilidad_bruta_bs,
        gross_profit_usd=money.utilidad_bruta_usd,
        invoice_total_bs=row.total_factura,
        exchange_rate=row.tasa_usd,
        is_non_fiscal=_flag(row.es_no_fiscal, at, ".es_no_fiscal"),
        has_promotion=_flag(row.tiene_promocion, at, ".tiene_promocion"),
        promotion_code=t[row.codigo_promocion],
        fingerprint=fingerprint,
    )


def _sold_at_once(
    day: date, hora: str, zone: ZoneInfo, at: str, instants: dict[tuple[date, str], datetime]
) -> datetime:
    """``_sold_at`` computed once per distinct (day, time) of a payload."""
    found = instants.get((day, hora))
    if found is None:
        found = instants[(day, hora)] = _sold_at(day, hora, zone, at)
    return found


def _sold_at(day: date, hora: str, zone: ZoneInfo, at: str) -> datetime:
    """Local ``fecha`` + ``hora`` in the location's zone, as a UTC instant."""
    if not wire.FIRST_YEAR <= day.year <= wire.LAST_YEAR:
        raise wire.Invalid(
            f"{at}.fecha", f"date {day} is outside {wire.FIRST_YEAR}-{wire.LAST_YEAR}"
        )
    local = datetime.combine(day, wire.parse_local_time(hora, f"{at}.hora"), tzinfo=zone)
    return local.astimezone(UTC)


def _echoed_filters(top: dict[str, msgspec.Raw]) -> dict[str, str]:
    """The request filters KLK echoes in ``meta`` (kept for inspection), as text."""
    meta = _decoder(dict[str, Any]).decode(top["meta"])
    skip = {"total_registros", "fecha_generacion"}
    return {
        key: str(value)
        for key, value in meta.items()
        if key not in skip and isinstance(value, str | int) and not isinstance(value, bool)
    }


# --- shared pieces -------------------------------------------------------------------------------

_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_DECODERS_LOCK = threading.Lock()


def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    """One typed decoder per type, built once under a lock.

    msgspec builds a type's decoding plan on first use, and two threads doing so at once crash
    the process (SIGSEGV, seen in the soak: two location threads of a fresh worker decoding their
    first sales payloads together). A prepared ``Decoder`` is safe to share between threads.
    """
    decoder = _DECODERS.get(kind)
    if decoder is None:
        with _DECODERS_LOCK:
            decoder = _DECODERS.get(kind)
            if decoder is None:
                decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    return decoder


@contextmanager
def _bad_payload_guard(call: str, body: bytes) -> Iterator[None]:
    """Whatever goes wrong decoding ``body`` leaves as a ``KlkError`` with the raw bytes."""
    try:
        yield
    except KlkError:
        raise
    except wire.Invalid as exc:
        raise KlkBadPayloadError(call, str(exc), raw=body) from None
    except msgspec.MsgspecError as exc:
        raise KlkBadPayloadError(call, str(exc), raw=body) from None
    except UnicodeDecodeError as exc:
        raise KlkBadPayloadError(call, f"body is not UTF-8 ({exc.reason})", raw=body) from None
    except RecursionError:
        raise KlkBadPayloadError(call, "JSON nested too deeply", raw=body) from None


def _without_bom(body: bytes) -> bytes:
    """.NET servers may prefix UTF-8 JSON with a byte-order mark."""
    return body[3:] if body.startswith(b"\xef\xbb\xbf") else body


def _envelope(body: bytes, call: str) -> dict[str, msgspec.Raw]:
    """The top-level object, values left undecoded; an ``error`` key is an error body."""
    top: dict[str, msgspec.Raw] = _decoder(dict[str, msgspec.Raw]).decode(_without_bom(body))
    _raise_error_body(top, call, body)
    return top


def _raise_error_body(top: dict[str, Any], call: str, body: bytes) -> None:
    if "error" not in top:
        return
    value = top["error"]
    if isinstance(value, msgspec.Raw):
        value = msgspec.json.decode(value)
    message = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    raise KlkErrorBodyError(call, message[:500] or "(empty error message)", raw=body)


def _decode_part(top: dict[str, msgspec.Raw], key: str, kind: type[_T]) -> _T:
    if key not in top:
        raise wire.Invalid("$", f"object has no `{key}` key")
    try:
        return cast(_T, _decoder(kind).decode(top[key]))
    except msgspec.ValidationError as exc:
        raise _located(exc, f"$.{key}") from None


def _reject_nul_text(body: bytes, rows: Sequence[msgspec.Struct], at: str) -> None:
    """A NUL can only reach a string through the JSON escape, so most bodies skip the walk."""
    if b"\\u0000" not in body:
        return
    for index, row in enumerate(rows):
        wire.check_text(row, f"{at}[{index}]")


def _located(exc: msgspec.ValidationError, prefix: str) -> wire.Invalid:
    """msgspec names paths from the part it decoded (``$.x``); re-root them in the whole body."""
    reason, _, path = str(exc).partition(" - at `$")
    return wire.Invalid(prefix + path.rstrip("`"), reason)


def _warehouse(row: wire.Warehouse, at: str) -> KlkWarehouse:
    return KlkWarehouse(
        branch_name=wire.optional_text(row.branch_name) or "",
        branch_code=wire.required_code(row.branch_code, f"{at}.CodigoSucursal"),
        warehouse_code=wire.required_code(row.warehouse_code, f"{at}.CodigoAlmacen"),
        warehouse_name=wire.optional_text(row.warehouse_name) or "",
    )


def _generated_at(text: object, zone: ZoneInfo | None) -> datetime | None:
    """``meta.fecha_generacion``: informative only, so an unreadable value (not a text, not a
    time) is dropped, not fatal.

    A value without an offset is local time of ``zone``; without a zone it cannot be placed.
    """
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        if zone is None:
            return None
        moment = moment.replace(tzinfo=zone)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
