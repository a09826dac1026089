"""The alert publisher's buffering: bounded, drop-oldest, ordered, back-off."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from spreadpilot.alerting import AlertPublisher, DropOldestBuffer
from spreadpilot.domain.alerts import Alert, AlertType


def test_buffer_drops_oldest_and_counts() -> None:
    buf: DropOldestBuffer[int] = DropOldestBuffer(3)
    assert [buf.append(i) for i in range(5)] == [0, 0, 0, 1, 1]
    assert list(buf) == [2, 3, 4]
    assert buf.dropped == 2


def test_discard_only_removes_what_was_peeked() -> None:
    buf: DropOldestBuffer[object] = DropOldestBuffer(2)
    a, b, c = object(), object(), object()
    buf.append(a)
    buf.append(b)
    peeked = buf.peek(2)
    buf.append(c)  # overflow pushes ``a`` out while ``peeked`` is being sent
    assert buf.discard_oldest(2, peeked) == 1
    assert list(buf) == [c]


class Switchable:
    """A sink standing in for Redis/Pub/Sub: records what it got, fails when down."""

    name = "switchable"

    def __init__(self) -> None:
        self.up = True
        self.received: list[str] = []

    def send_batch(self, alerts: Sequence[Alert]) -> int:
        if not self.up:
            raise ConnectionError("down")
        self.received.extend(a.id for a in alerts)
        return len(alerts)


def _alert(i: int) -> Alert:
    return Alert.create(
        AlertType.TV_RISK, None, f"a{i}", {}, datetime(2026, 1, 5, tzinfo=UTC), id=f"a{i}"
    )


def test_publisher_buffers_while_down_and_flushes_in_order() -> None:
    now = [0.0]
    sink = Switchable()
    pub = AlertPublisher([sink], buffer_size=3, retry_after=10.0, monotonic=lambda: now[0])
    assert pub.publish(_alert(0)) == {"switchable": True}
    sink.up = False
    for i in range(1, 6):
        assert pub.publish(_alert(i)) == {"switchable": False}
    status = pub.status()[0]
    assert (status.buffered, status.dropped, status.healthy) == (3, 2, False)
    sink.up = True
    now[0] = 5.0  # still inside the back-off: only buffered, sink not tried
    assert pub.publish(_alert(6)) == {"switchable": False}
    assert sink.received == ["a0"]
    now[0] = 11.0  # back-off over: buffered alerts go first, oldest first
    assert pub.publish(_alert(7)) == {"switchable": True}
    assert sink.received == ["a0", "a5", "a6", "a7"]  # a1..a4 dropped: capacity 3
    assert pub.status()[0].healthy


def test_flush_ignores_backoff() -> None:
    sink = Switchable()
    sink.up = False
    pub = AlertPublisher([sink], retry_after=3600.0)
    pub.publish(_alert(1))
    sink.up = True
    assert pub.flush() == 0
    assert sink.received == ["a1"]


def test_a_broken_sink_never_raises_into_the_caller() -> None:
    class Broken:
        name = "broken"

        def send_batch(self, alerts: Sequence[Alert]) -> int:
            raise RuntimeError("unexpected")

    pub = AlertPublisher([Broken()], retry_after=0.0)
    assert pub.publish(_alert(1)) == {"broken": False}


def test_publish_many_sends_in_order_in_few_batches() -> None:
    class Counting(Switchable):
        def __init__(self) -> None:
            super().__init__()
            self.batches = 0

        def send_batch(self, alerts: Sequence[Alert]) -> int:
            self.batches += 1
            return super().send_batch(alerts)

    sink = Counting()
    pub = AlertPublisher([sink], buffer_size=50, drain_batch=50)
    alerts = [_alert(i) for i in range(120)]
    assert pub.publish_many(alerts) == {"switchable": 120}
    # In order, in chunks of drain_batch (one wait per chunk, not per alert),
    # and the small buffer never dropped anything while the sink was healthy.
    assert sink.received == [a.id for a in alerts]
    assert sink.batches == 3
    assert pub.status()[0].dropped == 0


def test_publish_many_buffers_while_down_and_never_raises() -> None:
    now = [0.0]
    sink = Switchable()
    sink.up = False
    pub = AlertPublisher([sink], retry_after=10.0, monotonic=lambda: now[0])
    assert pub.publish_many([_alert(1), _alert(2)]) == {"switchable": 0}
    sink.up = True
    now[0] = 11.0
    assert pub.publish_many([_alert(3)]) == {"switchable": 1}
    assert sink.received == ["a1", "a2", "a3"]
