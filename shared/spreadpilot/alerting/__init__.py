"""Raising alerts: the one publisher every producer uses (Redis stream + Pub/Sub)."""

from spreadpilot.alerting.buffer import DropOldestBuffer
from spreadpilot.alerting.publisher import (
    STREAM,
    STREAM_FIELD,
    TOPIC,
    AlertPublisher,
    AlertSink,
    PubSubSink,
    RedisStreamSink,
    SinkStatus,
)

__all__ = [
    "STREAM",
    "STREAM_FIELD",
    "TOPIC",
    "AlertPublisher",
    "AlertSink",
    "DropOldestBuffer",
    "PubSubSink",
    "RedisStreamSink",
    "SinkStatus",
]
