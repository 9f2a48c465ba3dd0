"""The simulator's side of the soak: faults in, truth out, over its ``/_sim`` HTTP controls.

The soak never compares the product's tables with what a (possibly faulty) response carried:
only with the simulator's own account of what was sold, voided and in stock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class TruthLine:
    invoice_number: str
    line_number: int
    sku: str
    warehouse_code: str
    local_time: time
    quantity: Decimal
    total_usd: Decimal
    total_bs: Decimal

    @property
    def key(self) -> tuple[str, int]:
        return (self.invoice_number, self.line_number)


@dataclass(frozen=True, slots=True)
class DayTruth:
    location_id: str
    day: date
    lines: dict[tuple[str, int], TruthLine]
    total_usd: Decimal
    total_bs: Decimal


@dataclass(frozen=True, slots=True)
class Void:
    location_id: str
    day: date
    key: tuple[str, int]


@dataclass(frozen=True, slots=True)
class StockTruth:
    stock: Decimal
    price_usd: Decimal


class SimControl:
    """``/_sim`` of one simulator; every call is retried a little (the machine may be busy)."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, **params: str) -> Any:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def add_faults(self, specs: str) -> None:
        response = self._http.post("/_sim/faults", json={"faults": specs, "mode": "add"})
        response.raise_for_status()

    def clear_faults(self) -> None:
        self._http.delete("/_sim/faults").raise_for_status()

    def fault_counts(self) -> dict[str, int]:
        counts = self._get("/_sim/faults", log="0")["counts"]
        return {str(kind): int(n) for kind, n in counts.items()}

    def sales(self, location_id: str, day: date) -> DayTruth:
        body = self._get("/_sim/truth/sales", location=location_id, day=day.isoformat())
        lines = {}
        for item in body["items"]:
            line = TruthLine(
                invoice_number=item["invoice_number"],
                line_number=int(item["line_number"]),
                sku=item["sku"],
                warehouse_code=item["warehouse_code"],
                local_time=_ticks_time(item["local_time"]),
                quantity=Decimal(item["quantity"]),
                total_usd=Decimal(item["total_usd"]),
                total_bs=Decimal(item["total_bs"]),
            )
            lines[line.key] = line
        return DayTruth(
            location_id, day, lines, Decimal(body["total_usd"]), Decimal(body["total_bs"])
        )

    def voids(self) -> list[Void]:
        return [
            Void(
                item["location_id"],
                date.fromisoformat(item["day"]),
                (item["invoice_number"], int(item["line_number"])),
            )
            for item in self._get("/_sim/voids")
        ]

    def last_catalogue(self, warehouse_code: str) -> dict[str, StockTruth] | None:
        """The catalogue as the simulator last served it; None if it never served one."""
        response = self._http.get(
            "/_sim/truth/catalogue", params={"warehouse": warehouse_code, "last": "1"}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return {
            sku: StockTruth(Decimal(v["stock"]), Decimal(v["price_usd"]))
            for sku, v in response.json()["items"].items()
        }


def _ticks_time(text: str) -> time:
    """``HH:MM:SS.fffffff`` (100 ns ticks) to a time, truncated to microseconds as stored."""
    clock, _, fraction = text.partition(".")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return time(hours, minutes, seconds, int((fraction or "0").ljust(7, "0")[:6]))
