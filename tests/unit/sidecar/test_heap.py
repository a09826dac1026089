"""The sidecar's collector settings: frozen start-up heap, spaced young collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sidecar.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_exists_and_spaces_young_collections(restored_gc: None) -> None:
    before = gc.get_threshold()
    survivor = [object() for _ in range(100)]
    settle_heap()
    # everything alive now (this list included) is out of the collector's sight
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    # and garbage made afterwards is still collected
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
