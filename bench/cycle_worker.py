"""The ETL side of ``bench.cycle``, in a process of its own so its peak memory is its own.

    python -m bench.cycle_worker --database URL --klk URL --config FILE --at ISO [--jobs ...]

Runs each job (default: inventory, then sales, as the schedule fires them) through the real
submit + runner, on a clock that starts at ``--at`` and runs at real speed, and prints one JSON
object: per job the wall time, the ledger's per-location phase times and counters; and the peak
resident memory of this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ScaledClock
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, Trigger
from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.engine.submit import submit
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.logs import configure_logging
from fluxion_etl.settings import Settings
from fluxion_etl.store import ledger
from fluxion_etl.store.db import create_db_engine


def run_job(rt: Runtime, job: Job) -> dict[str, Any]:
    request = RunRequest(job=job, trigger=Trigger.SCHEDULE, requested_by="bench")
    started, cpu = time.perf_counter(), _cpu_seconds()
    queued = submit(rt.engine, request, config=rt.config, settings=rt.settings, clock=rt.clock)
    status = execute_run(rt, queued.run_id)
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    with rt.engine.connect() as conn:
        items = ledger.get_items(conn, queued.run_id)
    return {
        "job": job.value,
        "status": status.value,
        "wall_s": wall,
        "cpu_s": cpu,
        **_phases(items),
    }


def _cpu_seconds() -> float:
    """CPU time of this process (all threads): on a busy machine a steadier measure than wall."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _phases(items: Sequence[ledger.ItemRow]) -> dict[str, Any]:
    """Sums over locations (thread time: locations run concurrently) and the items' span."""
    started = [i.started_at for i in items if i.started_at]
    finished = [i.finished_at for i in items if i.finished_at]
    location_s = sum(
        (i.finished_at - i.started_at).total_seconds()
        for i in items
        if i.started_at and i.finished_at
    )
    return {
        "locations": len(items),
        "failed": [i.location_id for i in items if i.status != "succeeded"],
        "errors": sorted({i.error_message or "" for i in items if i.status != "succeeded"})[:3],
        "extract_s": sum(i.extract_ms for i in items) / 1000,
        "decode_s": sum(i.transform_ms for i in items) / 1000,
        "load_s": sum(i.load_ms for i in items) / 1000,
        "location_s": location_s,
        "span_s": (max(finished) - min(started)).total_seconds() if started and finished else 0.0,
        "fetched": sum(i.fetched for i in items),
        "inserted": sum(i.inserted for i in items),
        "updated": sum(i.updated for i in items),
        "unchanged": sum(i.unchanged for i in items),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cycle_worker")
    parser.add_argument("--database", required=True)
    parser.add_argument("--klk", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--at", required=True, help="simulated start instant (ISO, aware)")
    parser.add_argument("--jobs", default="inventory,sales")
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging("json", quiet=True)
    overrides: dict[str, Any] = {"database_url": args.database, "klk_base_url": args.klk}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    settings = Settings(**overrides)
    engine = create_db_engine(settings.database_url)
    klk = KlkClient.from_settings(settings)
    clock = ScaledClock(datetime.fromisoformat(args.at), 1.0)
    config = load_config(args.config)
    rt = Runtime(settings=settings, config=config, engine=engine, klk=klk, clock=clock)
    try:
        jobs = [run_job(rt, Job(name)) for name in args.jobs.split(",")]
    finally:
        klk.close()
        engine.dispose()
    print(json.dumps({"jobs": jobs, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
