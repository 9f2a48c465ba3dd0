"""A location whose outcome cannot reach the database (it restarts while the location fails) is
never left ``running`` or ``pending`` under a finished run: the run's end fails it with category
``database`` (the long soak once found a run ``partial`` with 17 items still pending after a
PostgreSQL restart)."""

from __future__ import annotations

from typing import Any

import pytest
from engine_support import STORES, TODAY, Chain, assert_sales_equal_served
from sqlalchemy.exc import OperationalError

from fluxion_etl.domain.states import ItemStatus, Job, RunStatus
from fluxion_etl.engine import runner
from fluxion_etl.store import ledger

UNREACHABLE = "tienda_02"


def test_items_whose_outcome_was_never_recorded_end_failed_with_the_run(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_finish_item = ledger.finish_item

    def finish_item(conn: Any, run_id: int, location_id: str, *args: Any, **kwargs: Any) -> None:
        """The database refuses every write about one location until the run ends."""
        if location_id == UNREACHABLE and kwargs.get("error_message") != runner.UNRECORDED:
            raise OperationalError(
                "UPDATE run_items", {}, Exception("server closed the connection")
            )
        real_finish_item(conn, run_id, location_id, *args, **kwargs)

    monkeypatch.setattr(ledger, "finish_item", finish_item)

    run = chain.run(Job.SALES)

    assert run.status is RunStatus.PARTIAL
    item = run.items[UNREACHABLE]
    assert (item.status, item.error_category, item.error_message) == (
        ItemStatus.FAILED,
        "database",
        runner.UNRECORDED,
    )
    assert all(
        i.status is ItemStatus.SUCCEEDED for loc, i in run.items.items() if loc != UNREACHABLE
    )
    for loc in STORES:
        if loc != UNREACHABLE:
            assert_sales_equal_served(chain, loc, [TODAY])
