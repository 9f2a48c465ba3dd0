"""Failure is never "empty" (SPEC §4.4): a fault on one location fails that location with its
category and phase, keeps the raw payload, leaves its earlier rows and coverage as they were, and
the others load; a duplicated line is stored once; a voided line goes at the reconcile."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from engine_support import (
    D1,
    D2,
    LOCATIONS,
    STORES,
    TODAY,
    Chain,
    assert_inventory_equal_served,
    assert_sales_equal_served,
    coverage_of,
    http_transport,
    local,
    sales_stamps,
    served_sales,
    stored_sales,
    stored_stock,
    watermark_of,
)
from sqlalchemy import select

from fluxion_etl.domain.states import ErrorCategory, ErrorPhase, ItemStatus, Job, RunStatus
from fluxion_etl.sim.faults import Fault, parse_faults
from fluxion_etl.store import sync_state
from fluxion_etl.store.schema import raw_payloads

FAULTY = "tienda_02"
HEALTHY = tuple(loc for loc in STORES if loc != FAULTY)
HALF_HOUR = 30 * 60


@dataclass(frozen=True)
class FaultCase:
    spec: str
    category: ErrorCategory
    phase: ErrorPhase
    keeps_body: bool  # KLK answered something, which is kept for inspection
    settings: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.spec.split(":", 1)[1]


SALES_FAULTS = [
    FaultCase(f"sales@{FAULTY}:http_500", ErrorCategory.HTTP_STATUS, ErrorPhase.EXTRACT, True),
    FaultCase(f"sales@{FAULTY}:http_503", ErrorCategory.HTTP_STATUS, ErrorPhase.EXTRACT, True),
    FaultCase(
        f"sales@{FAULTY}:hang=5",
        ErrorCategory.TIMEOUT,
        ErrorPhase.EXTRACT,
        False,
        {"klk_sales_read_timeout": 0.3, "klk_retry_attempts": 2},
    ),
    FaultCase(f"sales@{FAULTY}:error_body", ErrorCategory.ERROR_BODY, ErrorPhase.EXTRACT, True),
    FaultCase(
        f"sales@{FAULTY}:truncated_json", ErrorCategory.BAD_PAYLOAD, ErrorPhase.TRANSFORM, True
    ),
    FaultCase(
        f"sales@{FAULTY}:count_mismatch", ErrorCategory.COUNT_MISMATCH, ErrorPhase.EXTRACT, True
    ),
]


def _payloads(chain: Chain, run_id: int) -> list[tuple[str, str, bytes | None]]:
    c = raw_payloads.c
    with chain.engine.connect() as conn:
        rows = conn.execute(select(c.location_id, c.category, c.body).where(c.run_id == run_id))
        return [(r.location_id, r.category, r.body) for r in rows]


@pytest.mark.parametrize("case", SALES_FAULTS, ids=str)
def test_a_sales_fault_fails_one_location_and_leaves_its_data(
    chain: Chain, case: FaultCase
) -> None:
    first = chain.run(Job.SALES)
    before = (
        sales_stamps(chain.engine, FAULTY),
        coverage_of(chain.engine, FAULTY),
        watermark_of(chain.engine, FAULTY),
    )
    chain.clock.advance(HALF_HOUR)
    chain.plan.replace(_faults(case.spec))

    second = chain.run(Job.SALES, rt=chain.runtime(**case.settings))

    assert first.status is RunStatus.SUCCEEDED
    assert second.status is RunStatus.PARTIAL
    failed = second.items[FAULTY]
    assert (failed.status, failed.error_category, failed.error_phase) == (
        ItemStatus.FAILED,
        case.category,
        case.phase,
    )
    assert failed.inserted == failed.updated == 0
    assert second.run.error_category == case.category
    assert FAULTY in (second.run.error_message or "")
    after = (
        sales_stamps(chain.engine, FAULTY),
        coverage_of(chain.engine, FAULTY),
        watermark_of(chain.engine, FAULTY),
    )
    assert after == before, "nothing of the failed payload loaded; coverage did not advance"
    payloads = _payloads(chain, second.run.id)
    if case.keeps_body:
        assert [(loc, cat) for loc, cat, _ in payloads] == [(FAULTY, case.category.value)]
        assert payloads[0][2], "the body KLK sent is kept"
    else:
        assert payloads == []
    with chain.engine.connect() as conn:
        state = sync_state.get_state(conn, "sales", FAULTY)
    assert state is not None
    assert state.consecutive_failures == 1
    assert state.last_error_category == case.category
    for loc in HEALTHY:
        assert second.items[loc].status is ItemStatus.SUCCEEDED
        assert_sales_equal_served(chain, loc, [TODAY])
    if case.spec.endswith("http_503"):
        attempts = chain.settings.klk_retry_attempts
        assert chain.plan.counts()["http_503"] == attempts, "a 503 is retried, then fails"


@pytest.mark.parametrize(
    ("kind", "category", "phase"),
    [
        ("http_500", ErrorCategory.HTTP_STATUS, ErrorPhase.EXTRACT),
        ("truncated_json", ErrorCategory.BAD_PAYLOAD, ErrorPhase.TRANSFORM),
    ],
)
def test_a_catalogue_fault_fails_one_location_and_leaves_its_stock(
    chain: Chain, kind: str, category: ErrorCategory, phase: ErrorPhase
) -> None:
    chain.run(Job.INVENTORY)
    code = chain.config.location(FAULTY).warehouses[0].code
    before = stored_stock(chain.engine, FAULTY, code)
    chain.clock.advance(HALF_HOUR)  # stock moves as the stores sell
    chain.plan.replace(_faults(f"catalogue@{FAULTY}:{kind}"))

    second = chain.run(Job.INVENTORY)

    assert second.status is RunStatus.PARTIAL
    failed = second.items[FAULTY]
    assert (failed.status, failed.error_category, failed.error_phase) == (
        ItemStatus.FAILED,
        category,
        phase,
    )
    assert stored_stock(chain.engine, FAULTY, code) == before
    assert [(loc, cat) for loc, cat, _ in _payloads(chain, second.run.id)] == [
        (FAULTY, category.value)
    ]
    for loc in LOCATIONS:
        if loc != FAULTY:
            assert second.items[loc].status is ItemStatus.SUCCEEDED
            assert_inventory_equal_served(chain, loc)


def test_an_unreachable_klk_fails_every_location_with_network(chain: Chain) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    inventory = chain.run(Job.INVENTORY, rt=chain.runtime(klk_base_url=closed))
    sales = chain.run(Job.SALES, rt=chain.runtime(klk_base_url=closed))

    for run, locations in ((inventory, LOCATIONS), (sales, STORES)):
        assert run.status is RunStatus.FAILED, "never '0 rows, success'"
        assert run.run.error_category == ErrorCategory.NETWORK
        assert set(run.items) == set(locations)
        for item in run.items.values():
            assert (item.status, item.error_category, item.error_phase) == (
                ItemStatus.FAILED,
                ErrorCategory.NETWORK,
                ErrorPhase.EXTRACT,
            )
            assert item.fetched == item.inserted == 0
    for loc in STORES:
        assert coverage_of(chain.engine, loc) == []
        assert watermark_of(chain.engine, loc) is None


def test_a_duplicated_line_is_stored_once(chain: Chain) -> None:
    chain.plan.replace(_faults(f"sales@{FAULTY}:duplicate_lines=4"))

    run = chain.run(Job.SALES, date_from=D1, date_to=D2)

    assert run.status is RunStatus.SUCCEEDED
    item = run.items[FAULTY]
    lines = assert_sales_equal_served(chain, FAULTY, [D1, D2])
    assert item.duplicates == 8, "four repeated rows in each of the two days' answers"
    assert (item.fetched, item.inserted) == (lines + 8, lines)
    assert chain.plan.counts()["duplicate_lines"] == 2


def test_a_voided_line_disappears_at_the_reconcile_and_is_counted(chain: Chain) -> None:
    chain.plan.replace(_faults(f"sales@{FAULTY}:void_lines=3:n=1"))  # the D1 answer voids 3
    chain.run(Job.SALES, date_from=D1, date_to=D2)
    loaded = stored_sales(chain.engine, FAULTY, D1)
    voided = loaded.keys() - served_sales(chain.world, FAULTY, D1).keys()
    chain.plan.clear()

    reconcile = chain.run(Job.RECONCILE, params={"days": 2})

    assert len(voided) == 3, "the answer that voided them still carried them"
    assert reconcile.status is RunStatus.SUCCEEDED
    assert reconcile.items[FAULTY].deleted == 3
    assert all(reconcile.items[loc].deleted == 0 for loc in HEALTHY)
    assert stored_sales(chain.engine, FAULTY, D1).keys() == loaded.keys() - voided
    assert_sales_equal_served(chain, FAULTY, [D1, D2])


def test_an_empty_answer_while_open_is_covered_only_provisionally(chain: Chain) -> None:
    chain.run(Job.SALES)
    synced_to = chain.clock.now()
    lines = sales_stamps(chain.engine, FAULTY)
    chain.clock.advance(HALF_HOUR)
    chain.plan.replace(_faults(f"sales@{FAULTY}:empty_sales"))

    empty = chain.run(Job.SALES)
    provisional = coverage_of(chain.engine, FAULTY)
    chain.plan.clear()
    chain.clock.advance(HALF_HOUR)
    again = chain.run(Job.SALES)

    assert empty.items[FAULTY].status is ItemStatus.SUCCEEDED
    assert empty.items[FAULTY].fetched == 0
    assert sales_stamps(chain.engine, FAULTY).items() >= lines.items(), "nothing deleted"
    assert [(r.end, r.provisional) for r in provisional] == [
        (synced_to, False),
        (synced_to + timedelta(seconds=HALF_HOUR), True),
    ], "the empty stretch after the last real read is only provisional"
    assert again.items[FAULTY].status is ItemStatus.SUCCEEDED
    assert [r.provisional for r in coverage_of(chain.engine, FAULTY)] == [False]
    assert_sales_equal_served(chain, FAULTY, [TODAY])


def _faults(spec: str) -> list[Fault]:
    return list(parse_faults(spec))


class _DayDown(httpx.BaseTransport):
    """KLK answering HTTP 500 to the sales call of one branch and day, and normally otherwise."""

    def __init__(self, branch_code: str, day: date) -> None:
        self._markers = (branch_code.encode(), day.isoformat().encode())
        self._inner = http_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        if all(marker in body for marker in self._markers):
            return httpx.Response(500, text="Internal Server Error")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_a_backfill_keeps_the_days_it_loaded_and_the_next_one_resumes(chain: Chain) -> None:
    branch = chain.config.location(FAULTY).branch_code
    assert branch is not None

    first = chain.run(Job.SALES, date_from=D1, date_to=D2, rt=chain.runtime(_DayDown(branch, D2)))
    covered_after_first = coverage_of(chain.engine, FAULTY)
    second = chain.run(Job.SALES, date_from=D1, date_to=D2)

    assert first.status is RunStatus.PARTIAL
    assert (first.items[FAULTY].error_category, first.items[FAULTY].error_phase) == (
        ErrorCategory.HTTP_STATUS,
        ErrorPhase.EXTRACT,
    )
    assert [(r.start, r.end, r.provisional) for r in covered_after_first] == [
        (local(D1, 0), local(D2, 0), False)
    ], "the day loaded before the failure stays, with its coverage; the failed one is not covered"
    assert second.status is RunStatus.SUCCEEDED
    assert [w.get("skipped") for w in second.items[FAULTY].windows or []] == [
        "already covered",
        None,
    ], "the next backfill resumes at the day that failed"
    assert_sales_equal_served(chain, FAULTY, [D1, D2])
