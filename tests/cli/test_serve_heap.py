"""``serve`` freezes the objects made before serving, so full collections skip them, and only
then starts the service's threads, so that what they make is collected as usual."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime

from fluxion_etl.cli.service import freeze_startup_heap, start_frozen
from fluxion_etl.config import load_config
from fluxion_etl.domain.clock import ManualClock
from fluxion_etl.service import Service
from fluxion_etl.settings import Settings

NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def _tracked(target: object) -> bool:
    """Whether the collector walks ``target`` (frozen objects are out of every generation)."""
    return any(target is obj for obj in gc.get_objects())


def test_the_objects_made_before_serving_are_frozen_and_later_ones_are_not() -> None:
    before = object.__new__(type("Before", (), {}))
    try:
        freeze_startup_heap()
        after = object.__new__(type("After", (), {}))

        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(before)
        assert not any(after is obj for obj in gc.get_objects(2))
        assert not _tracked(before)
    finally:
        gc.unfreeze()


def test_the_service_threads_start_after_the_freeze(migrated_url: str) -> None:
    """A thread running while the heap is frozen would have its objects of that moment frozen
    with it (a run's payloads, never freed if they form a cycle): the threads start after."""
    settings = Settings(database_url=migrated_url, scheduler="external")  # type: ignore[call-arg]
    service = Service.open(settings, load_config(None), ManualClock(NOW))
    try:
        start_frozen(service)
        (maintenance,) = [t for t in threading.enumerate() if t.name == "maintenance"]

        assert not _tracked(service)
        assert _tracked(maintenance)
    finally:
        gc.unfreeze()
        service.stop(grace=1)
