"""``inline``: runs execute in worker threads of the service process (the default)."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

import structlog

from fluxion_etl.engine.runner import execute_run
from fluxion_etl.engine.runtime import Runtime
from fluxion_etl.launchers import LaunchError

log = structlog.get_logger("fluxion.launcher")


class InlineLauncher:
    name = "inline"
    hands_off_in_process = True  # a thread pool's queue

    def __init__(self, rt: Runtime, *, max_runs: int = 4) -> None:
        self._rt = rt
        self._pool = ThreadPoolExecutor(max_workers=max_runs, thread_name_prefix="run")
        self._futures: set[Future[object]] = set()
        self._held: set[int] = set()  # runs launched and not yet returned from their thread
        self._lock = threading.Lock()
        self._closed = False

    def launch(self, run_id: int) -> None:
        with self._lock:
            if self._closed:
                raise LaunchError("the service is shutting down and takes no new runs")
            future: Future[object] = self._pool.submit(self._execute, run_id)
            self._futures.add(future)
            self._held.add(run_id)
            future.add_done_callback(self._futures.discard)
            future.add_done_callback(lambda _: self._held.discard(run_id))

    def holds(self, run_id: int) -> bool:
        return run_id in self._held

    def _execute(self, run_id: int) -> object:
        try:
            return execute_run(self._rt, run_id)
        except Exception:  # a crash here must not kill the pool; the reaper abandons the run
            log.exception("run crashed", run_id=run_id)
            raise

    def poll(self) -> None:
        """Threads cannot vanish without the process; nothing to notice here."""

    def alive(self) -> bool:
        return not self._closed

    def close(self, grace: float) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._futures)
        wait(pending, timeout=grace)
        self._pool.shutdown(wait=False, cancel_futures=True)
