"""Inventory: the whole catalogue of every configured warehouse of a location (SPEC §4.6, §4.10).

extract every warehouse → then, in one transaction: upsert current stock, history only on change,
hold a mass disappearance (SPEC §4.9), counters and sync state.

A catalogue whose article list is byte for byte the one the warehouse's stored articles were
loaded from (``store.catalogue_digests``) is fetched but not decoded nor merged: its articles
count as unchanged. Most catalogues of stores that are closed do not change between cycles.
Of one that changed, only the articles no stored row was loaded from (by their fingerprints)
are decoded and merged, and the stored skus it no longer lists are removed by name: while a
store sells, a cycle changes about one article in a hundred. The run parameter ``full`` loads
every catalogue whole.
"""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from fluxion_etl.domain.records import Catalogue, CatalogueItem, KnownArticles
from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.states import ErrorCategory, ErrorPhase
from fluxion_etl.engine.fetch import fetch, is_mass_deletion
from fluxion_etl.engine.location import LocationContext
from fluxion_etl.engine.outcome import LocationFailure, LocationResult
from fluxion_etl.store import catalogue_digests, held, inventory_loader
from fluxion_etl.store.catalogue_digests import CatalogueDigest


def sync_inventory(ctx: LocationContext) -> tuple[LocationResult, list[CatalogueItem]]:
    """Returns the result and the articles seen, for the run's one products upsert."""
    result = LocationResult()
    loaded: dict[str, CatalogueDigest] = {}
    if not ctx.params.get("full"):  # ``fluxion-etl run inventory --full``
        with ctx.rt.engine.connect() as conn:
            loaded = catalogue_digests.loaded_digests(conn, ctx.location.id)
    catalogues = [
        _extract(ctx, w.code, result, loaded.get(w.code)) for w in ctx.location.warehouses
    ]
    ctx.check_deadline()
    with result.timings.measure(ErrorPhase.LOAD), ctx.rt.engine.begin() as conn:
        held: list[str] = []
        for catalogue in catalogues:
            if catalogue.unchanged:
                _confirm_loaded(ctx, conn, catalogue.warehouse_code, loaded)
                result.counters += ItemCounters(unchanged=loaded[catalogue.warehouse_code].articles)
                continue
            if catalogue.gone is not None:  # decoded against what the warehouse held
                _confirm_loaded(ctx, conn, catalogue.warehouse_code, loaded)
            counters, held_note = _load_one(ctx, conn, catalogue)
            result.counters += counters
            if held_note:
                held.append(held_note)
        result.held_message = "; ".join(held) or None
        ctx.commit_success(conn, result)
    # Logged after the commit: the run log writes through its own connection, which on SQLite
    # would wait for the write lock this load transaction holds.
    for note in held:
        ctx.log.warning("mass disappearance held", ctx.location.id, detail=note)
    ctx.log.info(
        "inventory loaded",
        ctx.location.id,
        **_counter_fields(result.counters),
        held_detail=result.held_message,
    )
    return result, [item for c in catalogues for item in c.items]


def _extract(
    ctx: LocationContext,
    warehouse_code: str,
    result: LocationResult,
    loaded: CatalogueDigest | None,
) -> Catalogue:
    ctx.check_deadline()
    ctx.progress("extract", warehouse_code)
    digest, known = None, None
    if loaded is not None:
        digest = loaded.digest

        def known() -> KnownArticles | None:  # asked for only when the catalogue changed
            try:
                with ctx.rt.engine.connect() as conn:
                    return catalogue_digests.known_articles(
                        conn, location_id=ctx.location.id, warehouse_code=warehouse_code
                    )
            except SQLAlchemyError as exc:  # the whole catalogue is decoded instead
                ctx.log.warning(
                    "stored articles unreadable; decoding the whole catalogue",
                    ctx.location.id,
                    warehouse=warehouse_code,
                    error=str(exc)[:200],
                )
                return None

    fetched = fetch(
        ctx,
        "catalogue",
        lambda: ctx.rt.klk.catalogue(warehouse_code, unchanged_if=digest, known=known),
        result,
    )
    if fetched.unchanged and loaded is not None:
        articles, rows = loaded.articles, loaded.fetched
    else:
        articles = fetched.articles
        rows = articles + fetched.duplicates_removed
    window: dict[str, object] = {"warehouse": warehouse_code, "articles": articles}
    if fetched.unchanged:
        window["unchanged"] = True
    elif fetched.gone is not None:
        window["decoded"] = len(fetched.items)
    result.windows.append(window)
    result.counters += ItemCounters(fetched=rows, duplicates=rows - articles)
    return fetched


def _confirm_loaded(
    ctx: LocationContext, conn: Connection, code: str, loaded: dict[str, CatalogueDigest]
) -> None:
    """A catalogue decoded against what its warehouse held (unchanged, or only its changes):
    the digest read with that must still be the one on file (a load since would have replaced
    it), so the stored articles are still the ones it describes."""
    if not catalogue_digests.confirm(
        conn,
        location_id=ctx.location.id,
        warehouse_code=code,
        digest=loaded[code],
    ):
        raise LocationFailure(
            ErrorCategory.DATABASE,
            ErrorPhase.LOAD,
            f"the stored inventory of {code} changed while its catalogue was fetched; "
            "the next run loads the catalogue whole",
        )


def _load_one(
    ctx: LocationContext, conn: Connection, catalogue: Catalogue
) -> tuple[ItemCounters, str | None]:
    settings = ctx.rt.settings
    staged = inventory_loader.stage_inventory(
        conn,
        location_id=ctx.location.id,
        warehouse_code=catalogue.warehouse_code,
        items=catalogue.items,
        run_id=ctx.run_id,
        now=ctx.rt.clock.now(),
        kept=catalogue.kept,
        gone=catalogue.gone,
    )
    threshold = settings.mass_deletion_threshold
    apply = bool(ctx.params.get("allow_mass_deletion")) or not is_mass_deletion(
        staged.disappearing, staged.current_total, threshold
    )
    digest = None
    if catalogue.digest is not None:
        fetched = catalogue.articles + catalogue.duplicates_removed
        digest = CatalogueDigest(catalogue.digest, catalogue.articles, fetched)
    loaded = inventory_loader.apply_inventory(
        conn, staged, apply_disappearances=apply, digest=digest
    )
    subject = f"catalogue {catalogue.warehouse_code}"
    held_note = None
    if apply:  # applied, or nothing vanishes any more: what an earlier run held is settled
        held.resolve_held_deletions(
            conn, location_id=ctx.location.id, subject=subject, now=ctx.rt.clock.now()
        )
    else:
        held_note = (
            f"{staged.disappearing} of {staged.current_total} articles of "
            f"{catalogue.warehouse_code} "
            f"vanished from the catalogue (> {threshold:.0%}); not applied"
        )
        held.record_held_deletion(
            conn,
            run_id=ctx.run_id,
            location_id=ctx.location.id,
            job=ctx.job.value,
            subject=subject,
            would_delete=staged.disappearing,
            total=staged.current_total,
            now=ctx.rt.clock.now(),
        )
    counters = ItemCounters(
        inserted=loaded.inserted,
        updated=loaded.updated,
        unchanged=loaded.unchanged,
        deleted=loaded.disappeared if apply else 0,
        held=0 if apply else staged.disappearing,
    )
    return counters, held_note


def _counter_fields(c: ItemCounters) -> dict[str, int]:
    return {
        "fetched": c.fetched,
        "inserted": c.inserted,
        "updated": c.updated,
        "unchanged": c.unchanged,
        "deleted": c.deleted,
        "held": c.held,
        "duplicates": c.duplicates,
    }
