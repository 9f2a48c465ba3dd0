"""A bug is not a KLK outage: an unexpected exception while one location runs fails that location
(category left empty: it fits none of SPEC §4's), the others load, and the next run loads it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import structlog
from engine_support import STORES, TODAY, Chain, assert_sales_equal_served, http_transport

from fluxion_etl.domain.states import ErrorPhase, ItemStatus, Job, RunStatus
from fluxion_etl.logs import configure_logging
from fluxion_etl.store import sync_state

BROKEN = "tienda_02"


@pytest.fixture(autouse=True)
def _plain_tracebacks() -> Iterator[None]:
    """The runner logs the bug's traceback; structlog's default console renderer draws it with
    rich, locals and all, which takes seconds. Plain JSON lines here; the defaults come back."""
    saved = structlog.get_config()
    configure_logging("json", quiet=True)
    try:
        yield
    finally:
        structlog.configure(**saved)


class _BugInTheStack(httpx.BaseTransport):
    """Talks to the simulator, except that calls about one branch raise a plain RuntimeError,
    as a bug below the KLK client would (nothing httpx or KLK would ever raise)."""

    def __init__(self, branch_code: str) -> None:
        self._marker = branch_code.encode()
        self._inner = http_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._marker in request.read():
            raise RuntimeError("a bug below the client")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_an_unexpected_error_fails_only_its_location(chain: Chain) -> None:
    branch = chain.config.location(BROKEN).branch_code
    assert branch is not None

    run = chain.run(Job.SALES, rt=chain.runtime(transport=_BugInTheStack(branch)))

    assert run.status is RunStatus.PARTIAL
    item = run.items[BROKEN]
    assert (item.status, item.error_category, item.error_phase) == (
        ItemStatus.FAILED,
        None,
        ErrorPhase.LOAD,
    )
    assert item.error_message == "internal error: RuntimeError: a bug below the client"
    with chain.engine.connect() as conn:
        assert sync_state.get_state(conn, "sales", BROKEN) is None, "a bug is no KLK failure"
    for loc in STORES:
        if loc != BROKEN:
            assert_sales_equal_served(chain, loc, [TODAY])


def test_the_next_run_after_an_unexpected_error_loads_the_location(chain: Chain) -> None:
    branch = chain.config.location(BROKEN).branch_code
    assert branch is not None
    chain.run(Job.SALES, rt=chain.runtime(transport=_BugInTheStack(branch)))

    again = chain.run(Job.SALES)

    assert again.status is RunStatus.SUCCEEDED
    with chain.engine.connect() as conn:
        state = sync_state.get_state(conn, "sales", BROKEN)
    assert state is not None
    assert state.consecutive_failures == 0
    assert_sales_equal_served(chain, BROKEN, [TODAY])
