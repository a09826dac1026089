"""Fills and commission reports -> PostgreSQL ``fills``, as they arrive.

IB callbacks fire on the event loop and must return at once, and PostgreSQL
may be down for minutes. So each report is queued in a bounded buffer and a
background task writes it with the idempotent repository calls (keyed on the
execution id), retrying with back-off while the database is away. Replays of
the same execution after a reconnect are harmless for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from spreadpilot.adapters.ib_broker import CommissionRecord, FillRecord
from spreadpilot.clock import NEW_YORK
from spreadpilot.storage.fills import ExecutionFill, FillsRepository

from sidecar.metrics import SidecarMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Fill:
    follower_id: str
    record: FillRecord


Pending = _Fill | CommissionRecord


def to_execution_fill(follower_id: str, f: FillRecord) -> ExecutionFill | None:
    """Map an IB execution onto a ``fills`` row (None for what is not storable)."""
    side: Literal["BOT", "SLD"]
    if f.side in ("BOT", "BUY"):
        side = "BOT"
    elif f.side in ("SLD", "SELL"):
        side = "SLD"
    else:
        return None
    if f.shares <= 0 or not f.exec_id:
        return None
    right: Literal["C", "P"] | None = None
    if f.right in ("C", "CALL"):
        right = "C"
    elif f.right in ("P", "PUT"):
        right = "P"
    expiry: date | None = None
    if f.expiry and len(f.expiry) >= 8 and f.expiry[:8].isdigit():
        expiry = date(int(f.expiry[:4]), int(f.expiry[4:6]), int(f.expiry[6:8]))
    return ExecutionFill(
        exec_id=f.exec_id,
        follower_id=follower_id,
        account=f.account,
        symbol=f.symbol,
        sec_type=f.sec_type,
        side=side,
        qty=Decimal(str(f.shares)),
        price=Decimal(str(f.price)),
        exec_time=f.time,
        trading_date=f.time.astimezone(NEW_YORK).date(),
        order_ref=f.order_ref or None,
        perm_id=f.perm_id or None,
        order_id=f.order_id or None,
        con_id=f.con_id or None,
        right=right,
        strike=Decimal(str(f.strike)) if f.strike else None,
        expiry=expiry,
        multiplier=100 if f.sec_type == "OPT" else None,
    )


class FillSink:
    """Bounded, retrying writer of fills and commissions."""

    def __init__(
        self,
        repo_factory: Callable[[], FillsRepository],
        metrics: SidecarMetrics,
        *,
        capacity: int = 50_000,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._repo_factory = repo_factory
        self._repo: FillsRepository | None = None
        self._metrics = metrics
        self._queue: deque[Pending] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.last_error: str | None = None
        self.written = 0
        self._seen: dict[str, None] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain_forever(), name="fill-sink")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add_fill(self, follower_id: str, fill: FillRecord) -> None:
        if fill.sec_type == "BAG":
            return  # the legs carry the money; a BAG-level report would double count
        self._queue.append(_Fill(follower_id, fill))
        if fill.exec_id not in self._seen:
            # Replays after a reconnect are written again (idempotent) but
            # counted once.
            self._seen[fill.exec_id] = None
            if len(self._seen) > 100_000:
                self._seen.pop(next(iter(self._seen)))
            self._metrics.fills.labels(follower_id).inc()
        self._kick()

    def add_commission(self, report: CommissionRecord) -> None:
        self._queue.append(report)
        self._kick()

    def _kick(self) -> None:
        self._metrics.fills_buffered.set(len(self._queue))
        self._wake.set()

    async def _drain_forever(self) -> None:
        delay = self._retry_initial
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                item = self._queue[0]
                try:
                    await asyncio.to_thread(self._write, item)
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}"
                    self._repo = None
                    log.warning(
                        "fills store unavailable; buffering",
                        extra={"pending": len(self._queue), "error": type(exc).__name__},
                    )
                    await asyncio.sleep(delay)
                    delay = min(self._retry_max, delay * 2)
                    continue
                delay = self._retry_initial
                self.last_error = None
                with contextlib.suppress(IndexError):
                    self._queue.popleft()
                self.written += 1
                self._metrics.fills_buffered.set(len(self._queue))

    def _write(self, item: Pending) -> None:
        if self._repo is None:
            self._repo = self._repo_factory()
        if isinstance(item, _Fill):
            row = to_execution_fill(item.follower_id, item.record)
            if row is not None:
                self._repo.upsert_execution(row)
        else:
            try:
                self._repo.attach_commission(
                    item.exec_id, item.commission, item.currency or "USD", item.realized_pnl
                )
            except ValueError:
                log.warning("unusable commission report dropped", extra={"exec_id": item.exec_id})
