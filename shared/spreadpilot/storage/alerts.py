"""The ``alerts`` collection: what the fan-out received and what it delivered where.

Why per-channel state in the alert's own document: the fan-out must send each
alert once per channel (SPEC section 7) although Pub/Sub delivers at least
once and a function may be retried. ``record`` de-duplicates by alert id, and
``claim`` is a compare-and-set per channel (with a lease, so a worker that
died mid-send does not block the channel forever) that lets exactly one
worker send. What still fails after the retries is a dead letter, listed for
``/status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from spreadpilot.adapters.mongo import Document, to_bson, with_codec
from spreadpilot.domain.alerts import Alert

COLLECTION = "alerts"
_MAX_ERROR = 500
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Credentials that HTTP client errors like to echo back (the Telegram token is in the URL).
_SECRETS = (
    (re.compile(r"bot\d+:[A-Za-z0-9_-]+"), "bot***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"SG\.[A-Za-z0-9_.-]+"), "SG.***"),
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # will be retried
    DEAD = "dead"  # retries exhausted: a dead letter


@dataclass(frozen=True)
class Delivery:
    """The state of one alert on one channel."""

    channel: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class StoredAlert:
    """An alert and its per-channel deliveries."""

    alert: Alert
    received_at: datetime
    deliveries: dict[str, Delivery]


@dataclass(frozen=True)
class DeadLetter:
    """An alert that could not be delivered on ``channel``."""

    alert: Alert
    channel: str
    attempts: int
    error: str | None
    at: datetime | None


def redact_error(error: str) -> str:
    """Error text safe to store: known credential shapes masked, length capped."""
    for pattern, replacement in _SECRETS:
        error = pattern.sub(replacement, error)
    return error if len(error) <= _MAX_ERROR else error[: _MAX_ERROR - 3] + "..."


def _channel(name: str) -> str:
    if not _CHANNEL.match(name):
        raise ValueError(f"invalid channel name {name!r}")
    return name


def _delivery(channel: str, raw: Document) -> Delivery:
    return Delivery(
        channel=channel,
        status=DeliveryStatus(raw.get("status", DeliveryStatus.PENDING.value)),
        attempts=int(raw.get("attempts", 0)),
        last_error=raw.get("last_error"),
        updated_at=raw.get("updated_at"),
    )


def _stored(doc: Document) -> StoredAlert:
    deliveries = {ch: _delivery(ch, raw) for ch, raw in (doc.get("deliveries") or {}).items()}
    return StoredAlert(
        alert=Alert.model_validate(doc["alert"]),
        received_at=doc["received_at"],
        deliveries=deliveries,
    )


class AlertsRepository:
    """Dedup, per-channel delivery state and dead letters over ``alerts``."""

    def __init__(self, db: Database[Any]) -> None:
        self._col: Collection[Document] = with_codec(db)[COLLECTION]

    def ensure_indexes(self) -> None:
        """Idempotent."""
        self._col.create_index([("created_at", DESCENDING)], name="created_at")
        self._col.create_index([("dead_channels", ASCENDING)], name="dead_channels")
        self._col.create_index([("follower_id", ASCENDING)], name="follower_id")

    def record(self, alert: Alert, *, at: datetime) -> bool:
        """Store a received alert; False if this id was already recorded (a redelivery)."""
        doc: Document = {
            "_id": alert.id,
            "alert": to_bson(alert.model_dump(mode="json")),
            "type": alert.type.value,
            "severity": alert.severity.value,
            "follower_id": alert.follower_id,
            "created_at": to_bson(alert.created_at),
            "received_at": to_bson(at),
            "deliveries": {},
            "dead_channels": [],
        }
        try:
            self._col.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    def get(self, alert_id: str) -> StoredAlert | None:
        """The alert and its deliveries, or None."""
        doc = self._col.find_one({"_id": alert_id})
        return None if doc is None else _stored(doc)

    def claim(self, alert_id: str, channel: str, *, at: datetime, lease: timedelta) -> bool:
        """Take the right to send ``alert_id`` on ``channel`` now.

        True for exactly one caller while the channel is pending or failed (or
        a previous claim's lease expired); False once sent or dead-lettered, or
        while another worker's lease runs.
        """
        ch = _channel(channel)
        status, lease_until = f"deliveries.{ch}.status", f"deliveries.{ch}.lease_until"
        result = self._col.update_one(
            {
                "_id": alert_id,
                "$or": [
                    {
                        status: {
                            "$nin": [
                                DeliveryStatus.SENT.value,
                                DeliveryStatus.DEAD.value,
                                DeliveryStatus.SENDING.value,
                            ]
                        }
                    },
                    {status: DeliveryStatus.SENDING.value, lease_until: {"$lt": to_bson(at)}},
                ],
            },
            {
                "$set": {
                    status: DeliveryStatus.SENDING.value,
                    lease_until: to_bson(at + lease),
                    f"deliveries.{ch}.updated_at": to_bson(at),
                },
                "$inc": {f"deliveries.{ch}.attempts": 1},
            },
        )
        return result.modified_count == 1

    def mark_sent(self, alert_id: str, channel: str, *, at: datetime) -> None:
        """The channel accepted the alert."""
        self._set_status(alert_id, channel, DeliveryStatus.SENT, at, None)

    def mark_failed(self, alert_id: str, channel: str, error: str, *, at: datetime) -> None:
        """This attempt failed; the alert may be claimed again."""
        self._set_status(alert_id, channel, DeliveryStatus.FAILED, at, error)

    def dead_letter(self, alert_id: str, channel: str, error: str, *, at: datetime) -> None:
        """Retries are exhausted: keep it where a person will see it (``/status``)."""
        ch = _channel(channel)
        self._set_status(alert_id, ch, DeliveryStatus.DEAD, at, error, add_dead=ch)

    def requeue(self, alert_id: str, channel: str, *, at: datetime) -> bool:
        """Make a dead letter pending again (after the channel was fixed)."""
        ch = _channel(channel)
        result = self._col.update_one(
            {"_id": alert_id, f"deliveries.{ch}.status": DeliveryStatus.DEAD.value},
            {
                "$set": {
                    f"deliveries.{ch}.status": DeliveryStatus.PENDING.value,
                    f"deliveries.{ch}.updated_at": to_bson(at),
                },
                "$pull": {"dead_channels": ch},
            },
        )
        return result.modified_count == 1

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest alert first."""
        letters: list[DeadLetter] = []
        cursor = self._col.find({"dead_channels": {"$exists": True, "$ne": []}})
        for doc in cursor.sort("created_at", DESCENDING).limit(limit):
            stored = _stored(doc)
            for ch in doc.get("dead_channels", []):
                d = stored.deliveries.get(ch)
                letters.append(
                    DeadLetter(
                        alert=stored.alert,
                        channel=ch,
                        attempts=d.attempts if d else 0,
                        error=d.last_error if d else None,
                        at=d.updated_at if d else None,
                    )
                )
        return letters[:limit]

    def count_dead_letters(self) -> int:
        """How many alerts have at least one dead channel."""
        return self._col.count_documents({"dead_channels": {"$exists": True, "$ne": []}})

    def recent(self, limit: int = 50) -> list[StoredAlert]:
        """The newest alerts with their delivery state."""
        cursor = self._col.find({}).sort("created_at", DESCENDING).limit(limit)
        return [_stored(d) for d in cursor]

    def _set_status(
        self,
        alert_id: str,
        channel: str,
        status: DeliveryStatus,
        at: datetime,
        error: str | None,
        *,
        add_dead: str | None = None,
    ) -> None:
        ch = _channel(channel)
        update: Document = {
            "$set": {
                f"deliveries.{ch}.status": status.value,
                f"deliveries.{ch}.updated_at": to_bson(at),
                f"deliveries.{ch}.last_error": None if error is None else redact_error(error),
            },
            "$unset": {f"deliveries.{ch}.lease_until": ""},
        }
        if add_dead is not None:
            update["$addToSet"] = {"dead_channels": add_dead}
        self._col.update_one({"_id": alert_id}, update)
