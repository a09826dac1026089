"""alert_fanout: send each alert once to the people who need it (SPEC section 7).

An alert arrives from Pub/Sub ``alerts`` (at-least-once: it may come twice, or
concurrently on two instances). For each *delivery* (channel + recipient) the
severity routing selects, the fan-out:

1. skips it if Redis holds ``alert:sent:{id}:{channel}`` (the dedup by id);
2. claims the channel with Redis ``SET alert:claim:{id}:{channel} NX EX``
   (the lease), so two concurrent deliveries of the same message cannot both
   send, and a worker that died mid-send does not block it past the lease.
   The claim is taken in Redis, not only in MongoDB, because a filtered
   ``update_one`` compare-and-set is not atomic on FerretDB (the local
   MongoDB): concurrent redeliveries both won it and both sent. The alert is
   still recorded in MongoDB ``alerts`` and claimed there too, for the
   per-channel status and dead letters ``/status`` shows;
3. sends with retries and exponential backoff (honouring Retry-After);
4. stores the outcome (sent, or a dead letter for a permanent failure or one
   still failing after the last retry, which ``/status`` shows) and only then
   sets the Redis marker (``SET NX`` with a TTL longer than Pub/Sub retention):
   a crash before that errs on retrying, never on silently dropping.

Returning normally acknowledges the Pub/Sub message. Only a delivery that is
in flight elsewhere raises, so Pub/Sub redelivers later and the marker or the
stored status decides.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import redis
from spreadpilot.adapters.telegram import DeliveryError
from spreadpilot.clock import Clock
from spreadpilot.config import DEFAULT_ALERT_ROUTING
from spreadpilot.domain.alerts import Alert, AlertChannel, Severity
from spreadpilot.storage.alerts import DeliveryStatus, StoredAlert

log = logging.getLogger(__name__)

SENT_TTL_SECONDS = 7 * 24 * 3600  # longer than Pub/Sub's 7-day retention
CLAIM_TTL_SECONDS = 120

#: Deletes the claim only if it is still ours: after a lease ran out another
#: worker may hold it, and deleting theirs would let a third one send too.
_RELEASE_CLAIM = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


MAX_ALERT_BYTES = 64 * 1024


class BadAlertMessage(ValueError):
    """A Pub/Sub message that is not an alert (acknowledged, not retried)."""


def decode_pubsub_alert(data: object) -> Alert:
    """The alert in a Pub/Sub CloudEvent body (``{"message": {"data": b64}}``)."""
    message = data.get("message") if isinstance(data, Mapping) else None
    raw = message.get("data") if isinstance(message, Mapping) else None
    if not isinstance(raw, str) or not raw:
        raise BadAlertMessage("no message data")
    if len(raw) > MAX_ALERT_BYTES * 4 // 3 + 4:
        raise BadAlertMessage(f"oversized message ({len(raw)} base64 characters)")
    try:
        return Alert.from_json(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadAlertMessage(f"not an alert: {str(exc).splitlines()[0][:200]}") from None


class AlertInFlight(Exception):
    """Another instance is delivering this alert right now; retry later."""


class TelegramSender(Protocol):
    def send_message(self, chat_id: str | int, text: str) -> int: ...


class MailSender(Protocol):
    def send(self, to: str, subject: str, text: str) -> str | None: ...


class FollowerChats(Protocol):
    """Where a follower's own alerts go (their Telegram chat), if anywhere."""

    def telegram_chat_for(self, follower_id: str) -> str | None: ...


class DeliveryLog(Protocol):
    """The MongoDB ``alerts`` record: received alerts, per-channel state, dead letters."""

    def record(self, alert: Alert, *, at: datetime) -> bool: ...

    def get(self, alert_id: str) -> StoredAlert | None: ...

    def claim(self, alert_id: str, channel: str, *, at: datetime, lease: timedelta) -> bool: ...

    def mark_sent(self, alert_id: str, channel: str, *, at: datetime) -> None: ...

    def dead_letter(self, alert_id: str, channel: str, error: str, *, at: datetime) -> None: ...


@dataclass(frozen=True)
class Routing:
    """Which channels each severity goes to (ALERT_ROUTING; default CRITICAL to
    Telegram and e-mail, WARNING to Telegram, INFO nowhere)."""

    channels: Mapping[Severity, tuple[AlertChannel, ...]] = field(
        default_factory=lambda: dict(DEFAULT_ALERT_ROUTING)
    )

    def wants(self, severity: Severity, channel: AlertChannel) -> bool:
        return channel in self.channels.get(severity, ())


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per delivery and the exponential backoff between them."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        backoff = float(min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1))))
        if retry_after is not None:
            return float(min(self.max_delay, max(backoff, retry_after)))
        return backoff


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient on one channel."""

    kind: AlertChannel
    recipient: str
    channel: str  # stable name in the alert record: telegram_admin, telegram_follower, email_admin


@dataclass
class FanoutResult:
    """What happened to each delivery of one alert."""

    alert_id: str
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "alert_id": self.alert_id,
            "sent": self.sent,
            "skipped": self.skipped,
            "dead_lettered": self.dead_lettered,
        }


@dataclass
class AlertFanout:
    """The use case; built once per function instance, called per message."""

    redis: redis.Redis
    clock: Clock
    delivery_log: DeliveryLog
    routing: Routing = field(default_factory=Routing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    telegram: TelegramSender | None = None
    admin_chat_id: str | None = None
    mail: MailSender | None = None
    admin_email: str | None = None
    follower_chats: FollowerChats | None = None

    def deliveries(self, alert: Alert) -> list[Delivery]:
        """The (channel, recipient) pairs this alert's severity is routed to."""
        out: list[Delivery] = []
        if self.routing.wants(alert.severity, AlertChannel.TELEGRAM) and self.telegram is not None:
            if self.admin_chat_id:
                out.append(Delivery(AlertChannel.TELEGRAM, self.admin_chat_id, "telegram_admin"))
            if alert.follower_id and self.follower_chats is not None:
                chat = self.follower_chats.telegram_chat_for(alert.follower_id)
                if chat and chat != self.admin_chat_id:
                    out.append(Delivery(AlertChannel.TELEGRAM, chat, "telegram_follower"))
        if (
            self.routing.wants(alert.severity, AlertChannel.EMAIL)
            and self.mail is not None
            and self.admin_email
        ):
            out.append(Delivery(AlertChannel.EMAIL, self.admin_email, "email_admin"))
        return out

    def handle(self, alert: Alert) -> FanoutResult:
        result = FanoutResult(alert.id)
        deliveries = self.deliveries(alert)
        if not deliveries:
            return result
        self.delivery_log.record(alert, at=self.clock.now())
        in_flight: list[str] = []
        for delivery in deliveries:
            sent_key = f"alert:sent:{alert.id}:{delivery.channel}"
            if self.redis.exists(sent_key):
                result.skipped.append(delivery.channel)
                continue
            claim_key = f"alert:claim:{alert.id}:{delivery.channel}"
            token = uuid.uuid4().hex
            if not self.redis.set(claim_key, token, nx=True, ex=CLAIM_TTL_SECONDS):
                self._not_claimed(alert.id, delivery.channel, sent_key, result, in_flight)
                continue
            try:
                if self.redis.exists(sent_key):
                    # The previous holder finished (it marks before it releases)
                    # between our first look and our claim.
                    result.skipped.append(delivery.channel)
                    continue
                lease = timedelta(seconds=CLAIM_TTL_SECONDS)
                if not self.delivery_log.claim(
                    alert.id, delivery.channel, at=self.clock.now(), lease=lease
                ):
                    self._not_claimed(alert.id, delivery.channel, sent_key, result, in_flight)
                    continue
                if self._deliver(alert, delivery):
                    result.sent.append(delivery.channel)
                else:
                    result.dead_lettered.append(delivery.channel)
                # Final either way (a dead letter is re-sent only by a person's requeue):
                # mark only now, after the outcome is known, so a crash mid-send retries.
                self.redis.set(sent_key, "1", nx=True, ex=SENT_TTL_SECONDS)
            finally:
                self._release(claim_key, token)
        if in_flight:
            raise AlertInFlight(f"alert {alert.id}: {', '.join(in_flight)} in flight elsewhere")
        return result

    def _not_claimed(
        self,
        alert_id: str,
        channel: str,
        sent_key: str,
        result: FanoutResult,
        in_flight: list[str],
    ) -> None:
        """Someone else holds the claim: skip if it is settled, else retry later."""
        if self._settled(alert_id, channel):
            # Done by an earlier delivery whose Redis marker was lost.
            self.redis.set(sent_key, "1", nx=True, ex=SENT_TTL_SECONDS)
            result.skipped.append(channel)
        else:
            in_flight.append(channel)

    def _release(self, claim_key: str, token: str) -> None:
        """Drop our claim early; if Redis fails the lease expires on its own."""
        try:
            self.redis.eval(_RELEASE_CLAIM, 1, claim_key, token)
        except redis.RedisError:
            log.warning("could not release %s; it expires with its lease", claim_key)

    def _settled(self, alert_id: str, channel: str) -> bool:
        stored = self.delivery_log.get(alert_id)
        if stored is None or channel not in stored.deliveries:
            return False
        return stored.deliveries[channel].status in (DeliveryStatus.SENT, DeliveryStatus.DEAD)

    def _deliver(self, alert: Alert, delivery: Delivery) -> bool:
        """Send with retries; True when sent, False when dead-lettered."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self._send_once(alert, delivery)
            except DeliveryError as exc:
                final = exc.permanent or attempt >= self.retry.attempts
                log.warning(
                    "alert %s %s attempt %d failed (%s): %s",
                    alert.id,
                    delivery.channel,
                    attempt,
                    "permanent" if exc.permanent else "transient",
                    exc,
                )
                if final:
                    self.delivery_log.dead_letter(
                        alert.id,
                        delivery.channel,
                        f"{exc} (after {attempt} attempt{'s' if attempt > 1 else ''})",
                        at=self.clock.now(),
                    )
                    return False
                self.clock.sleep_blocking(self.retry.delay(attempt, exc.retry_after))
                continue
            self.delivery_log.mark_sent(alert.id, delivery.channel, at=self.clock.now())
            return True

    def _send_once(self, alert: Alert, delivery: Delivery) -> None:
        if delivery.kind is AlertChannel.TELEGRAM:
            assert self.telegram is not None
            self.telegram.send_message(delivery.recipient, format_text(alert))
        else:
            assert self.mail is not None
            self.mail.send(delivery.recipient, format_subject(alert), format_text(alert))


def format_subject(alert: Alert) -> str:
    who = f" [{alert.follower_id}]" if alert.follower_id else ""
    return f"SpreadPilot {alert.severity.value}: {alert.type.value}{who}"


def format_text(alert: Alert) -> str:
    """Plain text a person can act on: what, who, the figures, when."""
    lines = [f"{alert.severity.value} {alert.type.value}"]
    if alert.follower_id:
        lines.append(f"follower: {alert.follower_id}")
    lines.append(alert.message)
    lines.extend(f"{key}: {value}" for key, value in _flatten(alert.params))
    lines.append(f"at: {alert.created_at.isoformat()}")
    lines.append(f"id: {alert.id}")
    return "\n".join(lines)


def _flatten(params: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out
