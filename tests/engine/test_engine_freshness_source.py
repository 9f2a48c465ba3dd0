"""Only a load that read a location's sales up to now makes them fresh: a backfill of past days
succeeds (and closes the circuit) without telling freshness that today's sales are in."""

from __future__ import annotations

from engine_support import D1, D2, TODAY, Chain

from fluxion_etl.domain.states import Job, RunStatus
from fluxion_etl.store import sync_state

STORE = "tienda_01"


def _state(chain: Chain) -> sync_state.SyncStateRow | None:
    with chain.engine.connect() as conn:
        return sync_state.get_state(conn, "sales", STORE)


def test_a_backfill_of_past_days_is_a_success_but_not_a_fresh_one(chain: Chain) -> None:
    past = chain.run(Job.SALES, locations=(STORE,), date_from=D1, date_to=D2)

    state = _state(chain)
    assert past.status is RunStatus.SUCCEEDED
    assert state is not None
    assert state.last_success_at is None  # nothing says today's sales are in
    assert state.consecutive_failures == 0
    assert state.last_attempt_at == chain.clock.now()

    chain.clock.advance(minutes=5)
    to_today = chain.run(Job.SALES, locations=(STORE,), date_from=D2, date_to=TODAY)

    state = _state(chain)
    assert to_today.status is RunStatus.SUCCEEDED
    assert state is not None
    assert (state.last_success_at, state.last_success_run_id) == (
        chain.clock.now(),
        to_today.run.id,
    )

    chain.clock.advance(minutes=5)
    chain.run(Job.SALES, locations=(STORE,), date_from=D1, date_to=D1)
    later = _state(chain)
    assert later is not None
    assert later.last_success_run_id == to_today.run.id  # a past day does not replace it
