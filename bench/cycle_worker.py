"""The ETL side of ``bench.cycle``, in a process of its own so its peak memory is its own.

    python -m bench.cycle_worker --database URL --klk URL --config FILE --at ISO [--jobs ...]

Runs each job (default: inventory, then sales, as the schedule fires them) through the real
submit + runner, on a clock that starts at ``--at`` and runs at real speed, and prints one JSON
object: per job the wall time, the ledger's per-location phase times and counters; the peak
resident memory of this process; and on PostgreSQL the CPU its server processes spent for the
cycle (every backend connected to the cycle's database, sampled each second).
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.common import peak_rss_mb, plain_dsn, process_cpu_s
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


class DatabaseCpu:
    """CPU seconds of the PostgreSQL backends serving one database, while this process runs.

    Backends come and go with the pool; each is sampled every ``interval`` seconds and its last
    reading kept, so a backend that lived less than one interval is missed (a few ms of work)."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self._dsn, self._interval = plain_dsn(url), interval
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="db-cpu", daemon=True)

    def __enter__(self) -> DatabaseCpu:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self._seen.values())

    def _loop(self) -> None:
        sql = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            while True:
                stopping = self._stop.wait(self._interval)
                for (pid,) in conn.execute(sql).fetchall():
                    self._seen[pid] = max(self._seen.get(pid, 0.0), process_cpu_s(pid))
                if stopping:
                    return


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
    database_cpu = None
    try:
        if args.database.startswith("postgresql"):
            with DatabaseCpu(args.database) as database_cpu:
                jobs = [run_job(rt, Job(name)) for name in args.jobs.split(",")]
        else:
            jobs = [run_job(rt, Job(name)) for name in args.jobs.split(",")]
    finally:
        klk.close()
        engine.dispose()
    db_cpu_s = database_cpu.seconds if database_cpu else None
    print(json.dumps({"jobs": jobs, "peak_rss_mb": peak_rss_mb(), "db_cpu_s": db_cpu_s}))


if __name__ == "__main__":
    main()
