"""What the sidecar needs from its stores, as small async interfaces.

The executor is written against these protocols, not against pymongo or
pg8000 directly, for one reason: every store call must be awaited *off* the
event loop (the drivers are synchronous and a dead database would freeze every
follower's ladder), and each call site must be able to treat "store down" as a
normal, handled outcome. The concrete adapters live in ``sidecar.stores_impl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from spreadpilot.domain.execution import ExecutionState
from spreadpilot.domain.signals import Signal

Record = dict[str, Any]


class StoreUnavailable(Exception):
    """A database did not answer; the caller decides whether that is fatal."""


class StaleRecord(Exception):
    """A compare-and-set lost: the record is not in the state the caller expected."""


@dataclass(frozen=True)
class Step:
    """A step the executor took and has not written yet: it goes with the next write.

    Why: the steps before an order (sizing, quotes, the margin check) only
    read from the broker. Writing each on its own would put a database round
    trip between every two broker calls; carried to the write that reserves
    the order id (or ends the execution), they cost nothing on the way to
    the order and the record still shows each of them, with its time.
    """

    state: ExecutionState
    fields: Record
    at: datetime


class ExecutionStore(Protocol):
    """The ``executions`` collection (one record per signal and follower)."""

    async def create_many(
        self, signal: Signal, follower_ids: Sequence[str], at: datetime
    ) -> list[tuple[bool, Record]]:
        """Insert each follower's RECEIVED record unless one exists, in one write.

        Returns (created, the stored record) per follower, in order. The
        unique index on (signal_id, follower_id) decides, so ten concurrent
        deliveries of one signal create each follower's record exactly once.
        """
        ...

    async def get(self, execution_id: str) -> Record | None: ...

    async def advance(
        self,
        current: Record,
        target: ExecutionState,
        fields: Record,
        at: datetime,
        via: Sequence[Step] = (),
        *,
        urgent: bool = True,
    ) -> Record:
        """Compare-and-set from ``current`` (state and version); raises ``StaleRecord``.

        ``via`` are steps taken since ``current`` was written; they are
        recorded (state, fields, time) in the same write, before ``target``.
        ``urgent=False``: a bookkeeping write that gates no broker call; it
        may wait behind the writes that do.
        """
        ...

    async def find_unfinished(self, follower_id: str | None = None) -> list[Record]: ...

    async def find_by_order_ref(self, order_ref: str) -> Record | None: ...

    async def list_for_signal(self, signal_id: str) -> list[Record]: ...


class FollowerSource(Protocol):
    async def list_all(self) -> list[Any]: ...


class ModeStore(Protocol):
    """Best-effort persistence of the kill-switch modes (may be down)."""

    async def load(self) -> Record | None: ...

    async def save(self, state: Record) -> None: ...
