"""The sidecar's side of the one alert publisher.

``AlertPublisher.publish`` may block for its sinks' timeouts when Redis or
Pub/Sub are down. Trading code must never wait on an alert, so here each alert
is logged at once (the log line is the alert's last resort) and handed to the
publisher in a worker thread, in order, by one background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from spreadpilot.domain.alerts import Alert, Severity

log = logging.getLogger("sidecar.alerts")

_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


class Publisher(Protocol):
    def publish(self, alert: Alert) -> dict[str, bool]: ...


class AsyncAlerts:
    """Non-blocking front of the publisher; bounded so a flood cannot eat memory."""

    def __init__(self, publisher: Publisher, capacity: int = 10_000) -> None:
        self.publisher = publisher
        self._queue: deque[Alert] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alerts")

    async def close(self) -> None:
        await self.drain(timeout_s=2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def publish(self, alert: Alert) -> None:
        log.log(
            _LEVEL.get(alert.severity, logging.CRITICAL),
            alert.message,
            extra={
                "alert_id": alert.id,
                "alert_type": alert.type.value,
                "follower_id": alert.follower_id,
                "params": alert.params,
            },
        )
        self._queue.append(alert)
        self._wake.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until queued alerts are handed to the publisher."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self._queue and loop.time() < end:  # noqa: ASYNC110 - bounded shutdown poll
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                alert = self._queue[0]
                try:
                    await asyncio.to_thread(self.publisher.publish, alert)
                except Exception:
                    log.exception("alert publisher failed")
                with contextlib.suppress(IndexError):
                    self._queue.popleft()
                self.published += 1
