"""What a service process does to the garbage collector once it is built (services.common.runtime)."""

from __future__ import annotations

import gc

from services.common.runtime import GC_THRESHOLDS, collect_garbage_for_serving


def test_start_up_objects_are_frozen_and_young_collections_become_rare():
    thresholds = gc.get_threshold()
    try:
        collect_garbage_for_serving()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] >= 10_000  # not Python's 700: a first scan allocates hundreds of objects
        assert gc.get_freeze_count() > 0  # what start-up created is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
