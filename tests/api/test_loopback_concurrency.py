"""Over a real uvicorn server on loopback: 50 concurrent identical triggers with one Idempotency-Key
create exactly one run (the database's unique key decides, not a check-then-insert)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from api_support import FakeLauncher
from sqlalchemy import Engine, func, select

from fluxion_etl.store.schema import runs

CALLERS = 50


def test_concurrent_identical_triggers_with_one_key_create_one_run(
    served: tuple[str, str, FakeLauncher], engine: Engine
) -> None:
    base, token, launcher = served
    start = threading.Barrier(CALLERS)
    headers = {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": "eventbridge-2026-01-05T14:00",
    }

    def trigger() -> httpx.Response:
        with httpx.Client(base_url=base, timeout=60) as client:
            start.wait()
            return client.post("/api/etl/sync", json={"ubicacion_id": None}, headers=headers)

    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        answers = list(pool.map(lambda _: trigger(), range(CALLERS)))

    codes = Counter(a.status_code for a in answers)
    assert codes == {202: 1, 200: CALLERS - 1}, [a.text for a in answers if a.status_code >= 300]
    assert len({a.json()["run_id"] for a in answers}) == 1
    assert all(a.json()["status"] == "running" for a in answers)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 1
    assert len(launcher.launched) == 1
