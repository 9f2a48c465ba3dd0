"""The loaders' front door, plus the small ones: the locations mirror and history retention.

Every function takes an open ``Connection`` inside the caller's transaction and never commits.

    sales_loader      load_sales, delete_missing_sales            (bulk, constant statements)
    inventory_loader  stage_inventory, apply_inventory, load_inventory, upsert_products
    this module       upsert_locations, purge_history

Raw payload retention is ``store.runlogs.purge_raw_payloads``, beside the code that writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from fluxion_etl.domain.records import Location
from fluxion_etl.store.dialect import insert_for
from fluxion_etl.store.inventory_loader import (
    InventoryResult,
    InventoryStage,
    apply_inventory,
    load_inventory,
    stage_inventory,
    upsert_products,
)
from fluxion_etl.store.sales_loader import LoadResult, delete_missing_sales, load_sales
from fluxion_etl.store.schema import inventory_history
from fluxion_etl.store.schema import locations as locations_table

__all__ = [
    "InventoryResult",
    "InventoryStage",
    "LoadResult",
    "apply_inventory",
    "delete_missing_sales",
    "load_inventory",
    "load_sales",
    "purge_history",
    "stage_inventory",
    "upsert_locations",
    "upsert_products",
]


def upsert_locations(conn: Connection, locations: Sequence[Location], now: datetime) -> int:
    """Mirror the configured locations into ``locations``; returns how many rows were written.

    Unchanged rows are left alone; a location no longer configured is kept (sales and stock refer
    to it) but marked inactive.
    """
    stored = {row["id"]: row for row in conn.execute(select(locations_table)).mappings()}
    wanted = {loc.id: _location_row(loc) for loc in locations}
    new = [row | {"updated_at": now} for id_, row in wanted.items() if id_ not in stored]
    changed = [
        row | {"updated_at": now}
        for id_, row in wanted.items()
        if id_ in stored and any(stored[id_][k] != v for k, v in row.items())
    ]
    gone = [id_ for id_, row in stored.items() if id_ not in wanted and row["active"]]
    if new:  # a concurrent mirror may have inserted the same row first: then it is there
        conn.execute(insert_for(conn, locations_table).on_conflict_do_nothing(), new)
    if changed:
        conn.execute(_update_location(), [{"b_" + k: v for k, v in r.items()} for r in changed])
    if gone:
        conn.execute(
            update(locations_table)
            .where(locations_table.c.id.in_(gone))
            .values(active=False, updated_at=now)
        )
    return len(new) + len(changed) + len(gone)


def _location_row(location: Location) -> dict[str, Any]:
    return {
        "id": location.id,
        "name": location.name,
        "kind": location.kind.value,
        "branch_code": location.branch_code,
        "timezone": location.timezone,
        "region": location.region,
        "active": location.active,
        "warehouses": [
            {"code": w.code, "role": w.role.value, "name": w.name} for w in location.warehouses
        ],
    }


def _update_location() -> Any:
    columns = [c.name for c in locations_table.columns if c.name != "id"]
    return (
        update(locations_table)
        .where(locations_table.c.id == bindparam("b_id"))
        .values({name: bindparam("b_" + name) for name in columns})
    )


def purge_history(conn: Connection, *, older_than: datetime) -> int:
    """History retention (``history_retention_days``): delete history rows older than that."""
    result = conn.execute(
        delete(inventory_history).where(inventory_history.c.changed_at < older_than)
    )
    return int(result.rowcount)
