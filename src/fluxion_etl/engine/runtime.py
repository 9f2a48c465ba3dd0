"""What a run needs from the outside world, built once per process and passed in (no globals)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from fluxion_etl.config import ChainConfig
from fluxion_etl.domain.clock import Clock, SystemClock
from fluxion_etl.klk.client import KlkClient
from fluxion_etl.settings import Settings


def process_owner() -> str:
    """A name for this process in leases and runs: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Runtime:
    settings: Settings
    config: ChainConfig
    engine: Engine
    klk: KlkClient
    clock: Clock = field(default_factory=SystemClock)
    owner: str = field(default_factory=process_owner)
    on_progress: Callable[[str, str, str], None] | None = None  # (location_id, stage, detail)
    stop_requested: Callable[[], bool] = lambda: False  # graceful shutdown: start no new location
