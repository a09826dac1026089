"""``AlertPublisher``: every producer's one way to raise an alert (SPEC section 7).

An alert goes to two sinks: the Redis stream ``alerts`` (field ``alert``, the
JSON, capped with ``MAXLEN ~``) and the Pub/Sub topic ``alerts`` (attributes
``alert_id``, ``type``, ``severity``) that the fan-out consumes.

Why it never raises and barely blocks: alerts are raised from trading code
(the ladder, the kill switch) at exactly the moments something is wrong, often
when a store is down too. So each sink has short timeouts, a bounded
drop-oldest buffer for what could not be sent, and a back-off window during
which it is not tried again (the cost of a dead sink is paid once, not per
alert). Buffered alerts are sent, oldest first, ahead of the next alert once
the sink answers again, or by ``flush()``. Delivery is at-least-once: a
timed-out publish may still land, so consumers de-duplicate by alert id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from spreadpilot.alerting.buffer import DropOldestBuffer
from spreadpilot.domain.alerts import Alert

if TYPE_CHECKING:
    from redis import Redis

    from spreadpilot.adapters.pubsub import PubSubPublisher
    from spreadpilot.config import Settings

log = logging.getLogger(__name__)

STREAM = "alerts"
TOPIC = "alerts"
STREAM_FIELD = "alert"

_CREDENTIALS_IN_URL = re.compile(r"//[^/@\s]*:[^/@\s]*@")


def _describe(exc: BaseException) -> str:
    """Exception text for logs: type, capped, with URL credentials masked."""
    text = _CREDENTIALS_IN_URL.sub("//***@", str(exc))[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AlertSink(Protocol):
    """Where alerts go. ``send_batch`` returns how many of ``alerts``, counted
    from the first, were confirmed; it may raise, which counts as zero."""

    name: str

    def send_batch(self, alerts: Sequence[Alert]) -> int: ...


class RedisStreamSink:
    """XADD to the ``alerts`` stream, approximately capped at ``maxlen`` entries."""

    name = "redis"

    def __init__(self, client: Redis, *, stream: str = STREAM, maxlen: int = 10_000) -> None:
        self._client = client
        self.stream = stream
        self.maxlen = maxlen

    def send_batch(self, alerts: Sequence[Alert]) -> int:
        pipe = self._client.pipeline(transaction=False)
        for alert in alerts:
            pipe.xadd(
                self.stream,
                {STREAM_FIELD: alert.to_json()},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.execute()
        return len(alerts)


class PubSubSink:
    """Publish to the ``alerts`` topic with the attributes consumers filter on."""

    name = "pubsub"

    def __init__(
        self, publisher: PubSubPublisher, *, topic: str = TOPIC, timeout: float = 2.0
    ) -> None:
        self._publisher = publisher
        self.topic = topic
        self.timeout = timeout

    def send_batch(self, alerts: Sequence[Alert]) -> int:
        return self._publisher.publish_many(
            self.topic,
            [
                (
                    alert.to_json().encode("utf-8"),
                    {
                        "alert_id": alert.id,
                        "type": alert.type.value,
                        "severity": alert.severity.value,
                    },
                )
                for alert in alerts
            ],
            timeout=self.timeout,
        )


@dataclass(frozen=True)
class SinkStatus:
    """One sink's health as ``/status`` shows it."""

    name: str
    buffered: int
    dropped: int
    last_error: str | None
    healthy: bool


class _SinkState:
    def __init__(self, sink: AlertSink, capacity: int) -> None:
        self.sink = sink
        self.buffer: DropOldestBuffer[Alert] = DropOldestBuffer(capacity)
        self.lock = threading.Lock()
        self.retry_at = 0.0
        self.last_error: str | None = None


class AlertPublisher:
    """Publishes alerts to every configured sink; never raises into the caller.

    ``retry_after`` is the back-off (seconds) after a sink failed, during which
    new alerts are only buffered; ``drain_batch`` bounds how many buffered
    alerts one ``publish`` call sends, so recovering from a long outage does not
    stall the caller that happens to publish first.
    """

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        buffer_size: int = 1000,
        retry_after: float = 5.0,
        drain_batch: int = 100,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks = [_SinkState(s, buffer_size) for s in sinks]
        self.retry_after = retry_after
        self.drain_batch = drain_batch
        self._monotonic = monotonic

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redis_timeout: float = 0.5,
        pubsub_timeout: float = 2.0,
        buffer_size: int = 1000,
        retry_after: float = 5.0,
    ) -> AlertPublisher:
        """Both sinks from REDIS_URL, PUBSUB_PROJECT_ID and ALERT_STREAM_MAXLEN."""
        from spreadpilot.adapters.pubsub import PubSubPublisher
        from spreadpilot.adapters.redis import connect

        redis_client = connect(settings.redis_url, timeout=redis_timeout)
        publisher = PubSubPublisher(settings.pubsub_project_id, timeout=pubsub_timeout)
        return cls(
            [
                RedisStreamSink(redis_client, maxlen=settings.alert_stream_maxlen),
                PubSubSink(publisher, timeout=pubsub_timeout),
            ],
            buffer_size=buffer_size,
            retry_after=retry_after,
        )

    def publish(self, alert: Alert) -> dict[str, bool]:
        """Send ``alert`` to every sink (after what is buffered); never raises.

        Returns ``{sink name: True if this alert was confirmed there}``; False
        means it is buffered for a later attempt.
        """
        outcome: dict[str, bool] = {}
        for state in self._sinks:
            try:
                outcome[state.sink.name] = self._publish_to(state, alert)
            except Exception:  # belt and braces: nothing reaches trading code
                log.exception("alert publisher internal error", extra={"sink": state.sink.name})
                outcome[state.sink.name] = False
        return outcome

    def publish_many(self, alerts: Sequence[Alert]) -> dict[str, int]:
        """Send several alerts, in order, waiting on each sink once per batch; never raises.

        Why: a sink that confirms each message (Pub/Sub waits for its client's
        ~10 ms batching) costs that wait once per ``publish``; a producer that
        raises many alerts at once (the TV monitor, one status event per
        spread) would pay it per alert. Here the alerts go in chunks of
        ``drain_batch``: a chunk is appended to the buffer, then drained in one
        ``send_batch``. Chunking keeps the drop-oldest bound meaning what it
        does for ``publish`` (a healthy sink never drops an alert because the
        caller raised many), and the order within and across chunks is the
        order given (the Redis stream sees them as ``publish`` would).

        Returns ``{sink name: how many of alerts were confirmed there}``; the
        rest are buffered for a later attempt.
        """
        confirmed = {state.sink.name: 0 for state in self._sinks}
        step = max(1, self.drain_batch)
        for start in range(0, len(alerts), step):
            chunk = list(alerts[start : start + step])
            for state in self._sinks:
                try:
                    confirmed[state.sink.name] += self._publish_chunk_to(state, chunk)
                except Exception:  # belt and braces: nothing reaches trading code
                    log.exception("alert publisher internal error", extra={"sink": state.sink.name})
        return confirmed

    async def publish_async(self, alert: Alert) -> dict[str, bool]:
        """``publish`` from a thread, so an event loop is never held by a slow sink."""
        return await asyncio.to_thread(self.publish, alert)

    def flush(self) -> int:
        """Try every sink's buffer now, ignoring the back-off; returns alerts still buffered."""
        for state in self._sinks:
            with state.lock:
                state.retry_at = 0.0
                self._drain(state, limit=None)
        return sum(len(s.buffer) for s in self._sinks)

    def status(self) -> list[SinkStatus]:
        """Buffered and dropped counts and the last error of each sink."""
        return [
            SinkStatus(
                name=s.sink.name,
                buffered=len(s.buffer),
                dropped=s.buffer.dropped,
                last_error=s.last_error,
                healthy=s.last_error is None,
            )
            for s in self._sinks
        ]

    def _publish_to(self, state: _SinkState, alert: Alert) -> bool:
        dropped = state.buffer.append(alert)
        if dropped:
            log.warning(
                "alert buffer full, dropped oldest alert",
                extra={"sink": state.sink.name, "dropped_total": state.buffer.dropped},
            )
        with state.lock:
            if self._monotonic() < state.retry_at:
                return False
            self._drain(state, limit=self.drain_batch)
            return all(a is not alert for a in state.buffer)

    def _publish_chunk_to(self, state: _SinkState, chunk: list[Alert]) -> int:
        """``_publish_to`` for several alerts: buffer all, drain once; how many landed."""
        for alert in chunk:
            if state.buffer.append(alert):
                log.warning(
                    "alert buffer full, dropped oldest alert",
                    extra={"sink": state.sink.name, "dropped_total": state.buffer.dropped},
                )
        with state.lock:
            if self._monotonic() < state.retry_at:
                return 0
            # Room for what was buffered before plus the whole chunk.
            self._drain(state, limit=self.drain_batch + len(chunk))
            still = {id(a) for a in state.buffer}
            return sum(1 for a in chunk if id(a) not in still)

    def _drain(self, state: _SinkState, limit: int | None) -> None:
        """Send buffered alerts oldest first until empty, ``limit`` or a failure."""
        sent_total = 0
        while len(state.buffer) and (limit is None or sent_total < limit):
            remaining = self.drain_batch if limit is None else limit - sent_total
            batch = state.buffer.peek(min(self.drain_batch, remaining))
            error: BaseException | None = None
            try:
                sent = state.sink.send_batch(batch)
            except Exception as exc:
                sent, error = 0, exc
            state.buffer.discard_oldest(sent, batch[:sent])
            sent_total += sent
            if error is None and sent == len(batch):
                if state.last_error is not None:
                    log.info("alert sink recovered", extra={"sink": state.sink.name})
                    state.last_error = None
                continue
            described = _describe(error) if error is not None else "partial batch"
            first_failure = state.last_error is None
            state.last_error = described
            state.retry_at = self._monotonic() + self.retry_after
            (log.warning if first_failure else log.debug)(
                "alert sink unavailable, buffering",
                extra={
                    "sink": state.sink.name,
                    "error": described,
                    "buffered": len(state.buffer),
                    "dropped_total": state.buffer.dropped,
                },
            )
            return
