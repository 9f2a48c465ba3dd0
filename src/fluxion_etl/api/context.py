"""What the HTTP API needs from the process that serves it, built once and passed to ``create_app``.

The API owns none of it: whoever builds the context (``fluxion-etl serve``, a test) opens the
engine and the launcher before serving and closes them afterwards.
"""

from __future__ import annotations

from asyncio import AbstractEventLoop
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock, SystemClock
from fluxion_etl.domain.states import Job
from fluxion_etl.launchers import Launcher
from fluxion_etl.ops.metrics import OpsMetrics
from fluxion_etl.settings import Settings
from fluxion_etl.store.db import read_only_engine


@dataclass
class ServiceContext:
    """The service's parts.

    ``scheduler_alive`` tells readiness whether the embedded scheduler's loop is running (None: no
    scheduler in this process, e.g. ``FLUXION_SCHEDULER=external``). ``schedule_periods`` gives the
    real period of each job's schedule for the freshness rule (None: 30 minutes for every job).
    ``metrics`` is this app's Prometheus registry (``ops.metrics``); built here when not given
    (the service builds it first, so its KLK client can report to it).
    """

    settings: Settings
    config: ChainConfig
    engine: Engine
    launcher: Launcher
    clock: Clock = field(default_factory=SystemClock)
    scheduler_alive: Callable[[], bool] | None = None
    schedule_periods: Callable[[], Mapping[Job, timedelta]] | None = None
    metrics: OpsMetrics | None = None
    read_engine: Engine = field(init=False)
    # State kept per event loop (``api.lookups``): futures belong to the loop that made them.
    loop_state: WeakKeyDictionary[AbstractEventLoop, object] = field(
        init=False, default_factory=WeakKeyDictionary, repr=False
    )

    def __post_init__(self) -> None:
        # Reads start a plain transaction: on SQLite they never queue behind a load's write lock.
        self.read_engine = read_only_engine(self.engine)
        if self.metrics is None:
            self.metrics = OpsMetrics(
                self.read_engine, config=self.config, settings=self.settings, clock=self.clock
            )
        self.metrics.periods = self.periods

    def periods(self) -> Mapping[Job, timedelta] | None:
        """The schedules' periods for the freshness rule (None: the default period)."""
        return self.schedule_periods() if self.schedule_periods is not None else None
