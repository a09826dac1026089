"""AlertPublisher and PubSubPublisher against real Redis and the Pub/Sub fake,
including a sink that is down and then comes back."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from spreadpilot.adapters.pubsub import PublishError, PubSubPublisher
from spreadpilot.adapters.redis import connect as redis_connect
from spreadpilot.alerting import AlertPublisher, PubSubSink, RedisStreamSink
from spreadpilot.devstack import ServiceEnv
from spreadpilot.domain.alerts import Alert, AlertType, Severity

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Forwarder:
    """A TCP relay on 127.0.0.1:``port`` to ``target``: the service 'coming back'."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.2)
        self._sockets: list[socket.socket] = [self._server]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(self._target, timeout=5)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


def _alert(i: int) -> Alert:
    return Alert.create(
        AlertType.LIMIT_REACHED,
        None,
        f"limit reached {i}",
        {"attempts": 10, "initial_limit": -0.92, "final_limit": -0.83, "filled_qty": 0},
        datetime(2026, 1, 5, 15, 0, tzinfo=UTC),
        follower_id="f1",
        id=f"alert-{i}",
    )


def _stream(redis_client: Any, key: str) -> list[Alert]:
    return [Alert.from_json(fields[b"alert"]) for _, fields in redis_client.xrange(key)]


def _pull(pubsub: Any, expected: int, deadline: float = 10.0) -> list[Any]:
    messages: list[Any] = []
    end = time.monotonic() + deadline
    while len(messages) < expected and time.monotonic() < end:
        response = pubsub.subscriber.pull(
            request={"subscription": pubsub.subscription_path, "max_messages": 50}, timeout=5
        )
        if response.received_messages:
            pubsub.subscriber.acknowledge(
                request={
                    "subscription": pubsub.subscription_path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        messages += [m.message for m in response.received_messages]
    return messages


def test_alert_goes_to_stream_and_topic(
    devstack: ServiceEnv, redis_client: Any, redis_key: Callable[[str], str], pubsub: Any
) -> None:
    pubsub.create()
    stream = redis_key("alerts")
    publisher = PubSubPublisher(pubsub.project_id, timeout=5)
    alerts = AlertPublisher(
        [
            RedisStreamSink(redis_connect(devstack.redis_url), stream=stream, maxlen=100),
            PubSubSink(publisher, topic=pubsub.topic_id, timeout=5),
        ]
    )
    assert alerts.publish(_alert(1)) == {"redis": True, "pubsub": True}
    assert _stream(redis_client, stream) == [_alert(1)]
    (message,) = _pull(pubsub, 1)
    assert Alert.from_json(message.data) == _alert(1)
    assert dict(message.attributes) == {
        "alert_id": "alert-1",
        "type": "LIMIT_REACHED",
        "severity": Severity.CRITICAL.value,
    }
    assert json.loads(message.data)["params"]["final_limit"] == -0.83
    publisher.close()


def test_stream_is_capped(
    devstack: ServiceEnv, redis_client: Any, redis_key: Callable[[str], str]
) -> None:
    stream = redis_key("capped")
    alerts = AlertPublisher(
        [RedisStreamSink(redis_connect(devstack.redis_url), stream=stream, maxlen=10)]
    )
    for i in range(300):
        alerts.publish(_alert(i))
    assert redis_client.xlen(stream) < 300  # MAXLEN ~ trims whole nodes, not exactly 10


def test_redis_down_buffers_without_raising_then_flushes(
    devstack: ServiceEnv, redis_client: Any, redis_key: Callable[[str], str]
) -> None:
    port = _free_port()  # nothing listens here: "Redis is down"
    stream = redis_key("alerts")
    alerts = AlertPublisher(
        [RedisStreamSink(redis_connect(f"redis://127.0.0.1:{port}/0", timeout=0.3), stream=stream)],
        retry_after=0.0,
    )
    started = time.monotonic()
    assert alerts.publish(_alert(1)) == {"redis": False}
    assert alerts.publish(_alert(2)) == {"redis": False}
    assert time.monotonic() - started < 2.0  # never blocks trading code for long
    (status,) = alerts.status()
    assert status.buffered == 2 and not status.healthy and status.last_error
    assert redis_client.xlen(stream) == 0

    host, redis_port = devstack.redis_url.split("//")[1].split("/")[0].split(":")
    relay = Forwarder(port, (host, int(redis_port)))  # Redis "comes back" on the same address
    try:
        assert alerts.publish(_alert(3)) == {"redis": True}
        assert [a.id for a in _stream(redis_client, stream)] == ["alert-1", "alert-2", "alert-3"]
        assert alerts.status()[0].healthy and alerts.status()[0].buffered == 0
    finally:
        relay.close()


def test_pubsub_down_buffers_then_flushes(
    devstack: ServiceEnv, pubsub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pubsub.create()
    port = _free_port()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    publisher = PubSubPublisher(pubsub.project_id, timeout=1.0, create_topics=False)
    alerts = AlertPublisher([PubSubSink(publisher, topic=pubsub.topic_id, timeout=1.0)])
    started = time.monotonic()
    assert alerts.publish(_alert(1)) == {"pubsub": False}
    assert time.monotonic() - started < 5.0
    assert alerts.status()[0].buffered == 1

    host, real_port = devstack.environ()["PUBSUB_EMULATOR_HOST"].split(":")
    relay = Forwarder(port, (host, int(real_port)))
    try:
        deadline = time.monotonic() + 30
        while alerts.flush() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert alerts.status()[0].buffered == 0
        received = {Alert.from_json(m.data).id for m in _pull(pubsub, 1)}
        assert "alert-1" in received
    finally:
        relay.close()
        publisher.close()


def test_pubsub_publisher_creates_topic_on_the_emulator(devstack: ServiceEnv, pubsub: Any) -> None:
    publisher = PubSubPublisher(pubsub.project_id, timeout=5)
    message_id = publisher.publish(pubsub.topic_id, b'{"x": 1}', {"kind": "manual"})
    assert message_id
    topic = pubsub.publisher.get_topic(request={"topic": pubsub.topic_path})
    assert topic.name == pubsub.topic_path
    publisher.close()


def test_pubsub_publisher_reports_failure_in_bounded_time(
    devstack: ServiceEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{_free_port()}")
    publisher = PubSubPublisher("spreadpilot-local", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PublishError):
        publisher.publish("signals", b"{}")
    assert time.monotonic() - started < 5.0
    publisher.close()


def test_from_settings_with_everything_down_never_raises(
    devstack: ServiceEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spreadpilot.config import Settings

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{_free_port()}")
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{_free_port()}/0", pubsub_project_id="spreadpilot-local"
    )
    alerts = AlertPublisher.from_settings(settings, pubsub_timeout=0.5)
    started = time.monotonic()
    assert alerts.publish(_alert(99)) == {"redis": False, "pubsub": False}
    assert time.monotonic() - started < 5.0
    assert [s.buffered for s in alerts.status()] == [1, 1]
