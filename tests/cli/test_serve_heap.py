"""``serve`` freezes the objects made before serving, so full collections skip them."""

from __future__ import annotations

import gc

from fluxion_etl.cli.service import freeze_startup_heap


def test_the_objects_made_before_serving_are_frozen_and_later_ones_are_not() -> None:
    before = object.__new__(type("Before", (), {}))
    try:
        freeze_startup_heap()
        after = object.__new__(type("After", (), {}))

        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(before)
        assert not any(after is obj for obj in gc.get_objects(2))
        assert not any(before is obj for obj in gc.get_objects())  # frozen: out of every generation
    finally:
        gc.unfreeze()
