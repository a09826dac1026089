"""A bounded FIFO that drops its oldest entries and counts what it dropped.

Why drop the oldest: while a sink is down, the newest alerts describe the
current state of the accounts; memory must stay bounded in a process that
trades, and the count of what was lost is itself reported.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestBuffer(Generic[T]):
    """Thread-safe bounded FIFO; ``append`` never blocks and never fails."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._dropped = 0
        self._lock = threading.Lock()

    def append(self, item: T) -> int:
        """Add ``item`` at the end; returns how many old items it pushed out (0 or 1)."""
        with self._lock:
            dropped = 0
            while len(self._items) >= self.capacity:
                self._items.popleft()
                dropped += 1
            self._items.append(item)
            self._dropped += dropped
            return dropped

    def peek(self, limit: int) -> list[T]:
        """Up to ``limit`` oldest items, left in place (removed by ``discard_oldest``)."""
        with self._lock:
            return [self._items[i] for i in range(min(limit, len(self._items)))]

    def discard_oldest(self, count: int, expected: list[T] | None = None) -> int:
        """Remove up to ``count`` oldest items once they were delivered; returns how many.

        With ``expected`` (what ``peek`` returned), only items still at the
        front are removed: if the buffer overflowed meanwhile and the peeked
        items were already dropped, nothing newer is removed by mistake.
        """
        with self._lock:
            removed = 0
            for i in range(count):
                if not self._items:
                    break
                if expected is not None and self._items[0] is not expected[i]:
                    continue
                self._items.popleft()
                removed += 1
            return removed

    @property
    def dropped(self) -> int:
        """How many items were pushed out by overflow since creation."""
        with self._lock:
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        with self._lock:
            return iter(list(self._items))
