"""``locations check``: the configuration against KLK's own warehouse lists."""

from __future__ import annotations

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.records import KlkWarehouse
from fluxion_etl.errors import KlkError
from fluxion_etl.klk.client import KlkClient


def check_locations(config: ChainConfig, klk: KlkClient) -> list[str]:
    """One line per problem; empty when every configured warehouse exists where it says."""
    try:
        known = _known_warehouses(klk)
    except KlkError as exc:
        return [f"cannot read KLK's warehouse lists: {exc}"]
    problems: list[str] = []
    for loc in config.locations:
        for warehouse in loc.warehouses:
            entry = known.get(warehouse.code)
            if entry is None:
                problems.append(f"{loc.id}: warehouse {warehouse.code} is not in KLK's lists")
            elif loc.branch_code and entry.branch_code != loc.branch_code:
                problems.append(
                    f"{loc.id}: warehouse {warehouse.code} belongs to KLK branch "
                    f"{entry.branch_code}, configured {loc.branch_code}"
                )
    return problems


def _known_warehouses(klk: KlkClient) -> dict[str, KlkWarehouse]:
    found: dict[str, KlkWarehouse] = {}
    for kind in ("pisoventa", "Reposicion"):
        for entry in klk.warehouses(kind).value:
            found.setdefault(entry.warehouse_code, entry)
    return found
