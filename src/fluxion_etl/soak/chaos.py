"""Carrying out the plan's actions against the running service, and recording what happened.

An action counts as injected only when it really took effect: a worker was killed while its run
was running, a service process was caught between queueing a run and launching it, a commit
failed, a backend was cut in the middle of a load. An action that found nothing to act on in its
time budget is logged as missed, and the soak fails for it (it would have proved nothing).

    kill_worker                 kill -9 a live worker of this soak (its run running)
    kill_worker_in_reconcile    trigger a reconcile through the API, kill -9 its worker mid-run
    kill_serve                  kill -9 a service process at a random moment, restart it later
    kill_serve_...launch        post a trigger, freeze (SIGSTOP) the process as soon as its run is
                                queued; if not yet launched, kill -9 it there (else let it go and
                                try again); restart it
    pg_restart                  pg_ctl restart -m fast of the soak's own cluster
    failed_commit               arm the commit-failure trigger for the next two successful loads
    backend_killed_mid_load     pg_terminate_backend of a connection inside a load transaction
    duplicate_key_burst         8 concurrent sales triggers with one Idempotency-Key, both processes
    concurrent_trigger_burst    6 concurrent inventory triggers without a key, both processes
    duplicate_fire_burst        6 concurrent deliveries of the next sales fire (scheduler headers),
                                racing the embedded schedulers of both processes
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus

from sqlalchemy import Engine, select

from fluxion_etl.domain import cron
from fluxion_etl.domain.schedules import fire_key
from fluxion_etl.soak.cluster import (
    PgCluster,
    arm_commit_failures,
    commit_budget_left,
    terminate_loading_backend,
    wait_ready,
)
from fluxion_etl.soak.modes import SoakMode
from fluxion_etl.soak.plan import Action, ActionKind
from fluxion_etl.soak.procs import ServeProcess, kill_pid, workers
from fluxion_etl.soak.timekeeper import Timekeeper
from fluxion_etl.soak.triggers import Answer, Api, fire_headers
from fluxion_etl.store.schema import runs

BUDGET = timedelta(minutes=45)  # simulated time an action may look for its moment
RESTART_AFTER = timedelta(minutes=15)
COMMIT_FAILURES = 2


@dataclass
class Chaos:
    clock: Timekeeper
    mode: SoakMode
    seed: int
    serves: list[ServeProcess]
    marker: str
    cluster: PgCluster
    db: Engine  # AUTOCOMMIT, on the soak database
    api: Api
    serve_timeout: float
    say: Callable[[str], None]
    injected: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _serial: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(f"fluxion-soak-chaos:{self.seed}")

    # --- dispatch --------------------------------------------------------------------------------

    def run(self, action: Action) -> None:
        handlers: dict[ActionKind, Callable[[Action], str | None]] = {
            ActionKind.KILL_WORKER: self._kill_worker,
            ActionKind.KILL_WORKER_IN_RECONCILE: self._kill_reconcile,
            ActionKind.KILL_SERVE: self._kill_serve,
            ActionKind.KILL_SERVE_QUEUED: self._kill_serve_queued,
            ActionKind.PG_RESTART: self._pg_restart,
            ActionKind.FAILED_COMMIT: self._failed_commit,
            ActionKind.BACKEND_KILLED_MID_LOAD: self._backend_mid_load,
            ActionKind.DUPLICATE_KEY_BURST: self._duplicate_key_burst,
            ActionKind.CONCURRENT_BURST: self._concurrent_burst,
            ActionKind.DUPLICATE_FIRE_BURST: self._duplicate_fire_burst,
        }
        started = self.clock.now()
        try:
            done = handlers[action.kind](action)
        except Exception as exc:  # an action that broke is a missed action, not a crashed soak
            done = None
            self.missed.append(f"{action.kind.value}: {type(exc).__name__}: {exc}")
        stamp = f"{started.astimezone(action.at.tzinfo):%a %H:%M}"
        if done is None:
            self.say(f"  {stamp}  {action.kind.value}: missed ({self._last_missed(action)})")
        else:
            self.injected[action.kind.value] += 1
            self.say(f"  {stamp}  {action.kind.value}: {done}")

    def _last_missed(self, action: Action) -> str:
        for line in reversed(self.missed):
            if line.startswith(action.kind.value):
                return line.split(": ", 1)[1]
        self.missed.append(f"{action.kind.value}: nothing to act on in {BUDGET}")
        return f"nothing to act on in {BUDGET}"

    # --- helpers ---------------------------------------------------------------------------------

    def _until(self, budget: timedelta = BUDGET) -> datetime:
        return self.clock.now() + budget

    def _key(self, what: str) -> str:
        self._serial += 1
        return f"soak-{self.seed}-{what}-{self._serial}"

    def _run_status(self, run_id: int) -> tuple[str, str | None] | None:
        with self.db.connect() as conn:
            row = conn.execute(
                select(runs.c.status, runs.c.external_ref).where(runs.c.id == run_id)
            ).first()
        return None if row is None else (str(row.status), row.external_ref)

    def _running(self) -> set[int]:
        with self.db.connect() as conn:
            return {
                int(r.id) for r in conn.execute(select(runs.c.id).where(runs.c.status == "running"))
            }

    def _restart(self, serve: ServeProcess) -> None:
        self.clock.sleep(RESTART_AFTER.total_seconds())
        serve.start(self.serve_timeout)

    # --- process kills ---------------------------------------------------------------------------

    def _kill_worker(self, action: Action) -> str | None:
        until = self._until(2 * BUDGET)  # a worker may start late on a loaded machine
        while self.clock.now() < until:
            running = self._running()
            busy = [w for w in workers(self.marker) if w.run_id in running]
            if busy:
                victim = self._rng.choice(busy)
                if kill_pid(victim.pid):
                    return f"killed worker pid {victim.pid} of run {victim.run_id}"
            time.sleep(0.05)
        return None

    def _kill_reconcile(self, action: Action) -> str | None:
        for _ in range(3):
            key = self._key("reconcile")
            answer = self.api.post(
                action.serve, "/api/etl/sync/reconcile", {"days": 1}, {"Idempotency-Key": key}
            )
            if answer.run_id is None:
                self.clock.sleep(600)
                continue
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                state = self._run_status(answer.run_id)
                if state is None or state[0] not in ("queued", "running"):
                    break
                if state[0] == "running":
                    found = [w for w in workers(self.marker) if w.run_id == answer.run_id]
                    if found and kill_pid(found[0].pid):
                        return f"killed worker pid {found[0].pid} of reconcile run {answer.run_id}"
                time.sleep(0.02)
        return None

    def _kill_serve(self, action: Action) -> str | None:
        serve = self.serves[action.serve]
        pid = serve.kill()
        if pid is None:
            return None
        self._restart(serve)
        return f"killed service {serve.index} (pid {pid}), restarted as pid {serve.pid}"

    def _kill_serve_queued(self, action: Action) -> str | None:
        """Up to 8 tries at catching a queued run before its launch; a call answered 409 (its
        location held by a queued or running run) made no run and is not a try: it is called
        again a simulated minute later, within the action's budget."""
        serve = self.serves[action.serve]
        tries, until = 0, self._until()
        while tries < 8 and self.clock.now() < until:
            key = self._key("queued")
            answers: list[Answer] = []
            caller = threading.Thread(
                target=self._post_into,
                args=(answers, serve.index, {"ubicacion_id": action.location}, key),
                daemon=True,
            )
            caller.start()
            caught = self._catch_between_queue_and_launch(serve, f"api:{key}", caller)
            if caught is not None:
                self._restart(serve)
                return f"{caught}; restarted as pid {serve.pid}"
            caller.join(30)
            busy = bool(answers) and answers[0].status_code == HTTPStatus.CONFLICT
            tries += 0 if busy else 1
            self.clock.sleep(60 if busy else 300)
        return None

    def _post_into(
        self, answers: list[Answer], serve: int, body: dict[str, object], key: str
    ) -> None:
        headers = {"Idempotency-Key": key}
        answers.append(self.api.post(serve, "/api/etl/sync", dict(body), headers=headers))

    def _catch_between_queue_and_launch(
        self, serve: ServeProcess, key: str, caller: threading.Thread
    ) -> str | None:
        pid = serve.pid
        if pid is None or not serve.alive():
            return None
        deadline = time.monotonic() + 30
        with self.db.connect() as conn:
            while time.monotonic() < deadline:
                row = conn.execute(select(runs.c.id).where(runs.c.idempotency_key == key)).first()
                if row is not None:
                    kill_pid(pid, signal.SIGSTOP)
                    state = self._run_status(int(row.id))
                    if state is not None and state[1] is None:
                        serve.kill()
                        return (
                            f"killed service {serve.index} (pid {pid}) with run {row.id} "
                            "queued, not launched"
                        )
                    kill_pid(pid, signal.SIGCONT)
                    return None
                if not caller.is_alive():
                    return None
        return None

    # --- database --------------------------------------------------------------------------------

    def _pg_restart(self, action: Action) -> str | None:
        began = time.monotonic()
        self.cluster.restart()
        wait_ready(self.db)
        return f"PostgreSQL restarted in {time.monotonic() - began:.1f} s"

    def _failed_commit(self, action: Action) -> str | None:
        arm_commit_failures(self.db, COMMIT_FAILURES)
        until = self._until(timedelta(hours=2))
        while self.clock.now() < until:
            left = commit_budget_left(self.db)
            if left == 0:
                break
            time.sleep(0.2)
        arm_commit_failures(self.db, 0)  # disarm whatever is left
        failed = COMMIT_FAILURES - left
        return f"{failed} load commit(s) failed at COMMIT" if failed else None

    def _backend_mid_load(self, action: Action) -> str | None:
        until = self._until(timedelta(hours=2))
        while self.clock.now() < until:
            pid = terminate_loading_backend(self.db)
            if pid is not None:
                return f"terminated backend {pid} inside a load transaction"
            time.sleep(0.01)
        return None

    # --- trigger bursts --------------------------------------------------------------------------

    def _duplicate_key_burst(self, action: Action) -> str | None:
        key = self._key("burst")
        burst = self.api.burst(
            "duplicate_key_burst", "/api/etl/sync/ventas", {"ubicacion_id": action.location},
            copies=8, first_serve=action.serve, headers={"Idempotency-Key": key}, key=key,
        )  # fmt: skip
        return f"8 x sales {action.location} key {key}: {_codes(burst.answers)}"

    def _concurrent_burst(self, action: Action) -> str | None:
        burst = self.api.burst(
            "concurrent_trigger_burst", "/api/etl/sync", {"ubicacion_id": action.location},
            copies=6, first_serve=action.serve,
        )  # fmt: skip
        return f"6 x inventory {action.location}, no key: {_codes(burst.answers)}"

    def _duplicate_fire_burst(self, action: Action) -> str | None:
        schedule = next(s for s in self.mode.schedules if s.job == "sales")
        due = cron.next_fire(
            schedule.cron, "America/Caracas", self.clock.now() + timedelta(minutes=2)
        )
        wait = (due - self.clock.now()).total_seconds()
        self.clock.sleep(max(0.0, wait))
        burst = self.api.burst(
            "duplicate_fire_burst", "/api/etl/sync/ventas", {},
            copies=6, first_serve=action.serve, headers=fire_headers(schedule.name, due),
            key=fire_key(schedule.name, due), fire=(schedule.name, due),
        )  # fmt: skip
        return f"6 x fire {schedule.name} {due:%H:%M} UTC: {_codes(burst.answers)}"


def _codes(answers: object) -> str:
    counts = Counter(getattr(a, "status_code", 0) for a in answers)  # type: ignore[attr-defined]
    return ", ".join(f"{n} x {code}" for code, n in sorted(counts.items()))
