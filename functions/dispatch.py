"""dispatch_signal: hand one signal to every eligible follower's sidecar.

Pub/Sub delivers at least once, so this runs for the same signal any number of
times, possibly concurrently. Exactly-once execution per follower rests on
the sidecar (its execution record is keyed by signal id and follower, and the
order by a deterministic ``orderRef``); this side adds a Redis marker per
(signal, follower) set after the sidecar accepted, so a redelivery does not
even call again.

Outcome per follower:
- accepted (2xx) or refused for a permanent reason (4xx other than 408/429:
  the sidecar looked at it and said no; retrying changes nothing) -> done;
- unreachable, 408, 429 or 5xx -> transient.
The function returns normally (Pub/Sub acks) only when no follower is
transient; otherwise it raises after trying every follower, so one follower's
sick sidecar never delays the others, and Pub/Sub redelivers for the rest.

A message that cannot be a signal (not JSON, invalid, oversized) is logged and
acknowledged: redelivering it would fail forever and nothing must trade. So is
a well-formed signal beyond this deployment's limits (qty above
MAX_QTY_PER_LEG, width above MAX_SPREAD_WIDTH, a strike off the grid, another
ticker): the Signal model checks only what holds under any configuration, and
a Pub/Sub message may come from anyone's publisher, not only our parsers.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from spreadpilot.adapters.sidecar_client import SidecarRefused, SidecarReply, SidecarUnavailable
from spreadpilot.config import get_settings
from spreadpilot.domain.followers import Follower
from spreadpilot.domain.signals import Signal, SignalLimits, limits_problem

log = logging.getLogger(__name__)

# Pub/Sub allows 10 MB; a signal is a few hundred bytes. Anything far larger is
# not ours, and parsing it is a waste or an attack.
MAX_SIGNAL_BYTES = 16 * 1024
DISPATCHED_TTL_SECONDS = 3 * 24 * 3600


class BadMessage(ValueError):
    """A Pub/Sub message that is not a usable signal (acknowledged, not retried)."""


class DispatchIncomplete(Exception):
    """Some followers' sidecars failed transiently; Pub/Sub must redeliver."""


class FollowerDirectory(Protocol):
    def list_enabled(self) -> list[Follower]: ...


class SidecarPort(Protocol):
    def trade_signal(self, body: Mapping[str, Any]) -> SidecarReply: ...


@dataclass(frozen=True)
class SignalMessage:
    """The decoded message: the signal and an optional single-follower route."""

    signal: Signal
    follower_id: str | None
    message_id: str | None


def decode_pubsub_signal(
    data: Mapping[str, Any], limits: SignalLimits | None = None
) -> SignalMessage:
    """Decode a Pub/Sub push/CloudEvent body (``{"message": {"data": b64, ...}}``).

    Raises ``BadMessage`` for anything that must not trade, including a valid
    signal beyond ``limits`` (default: this deployment's, from the settings),
    checked with the same rules the sheet and manual parsers apply.
    """
    message = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(message, Mapping):
        raise BadMessage("no Pub/Sub message in the event")
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise BadMessage("the Pub/Sub message has no data")
    if len(raw) > MAX_SIGNAL_BYTES * 4 // 3 + 4:
        raise BadMessage(f"the message is oversized ({len(raw)} base64 characters)")
    try:
        payload = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("the message data is not base64") from None
    if len(payload) > MAX_SIGNAL_BYTES:
        raise BadMessage(f"the message is oversized ({len(payload)} bytes)")
    try:
        signal = Signal.from_json(payload)
    except ValueError as exc:
        first = str(exc).splitlines()[0][:200]
        raise BadMessage(f"the message is not a valid signal: {first}") from None
    problem = limits_problem(
        signal, limits if limits is not None else get_settings().signal_limits()
    )
    if problem is not None:
        raise BadMessage(f"the signal is beyond this deployment's limits: {problem[:200]}")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        attributes = {}
    attr_id = attributes.get("signal_id")
    if attr_id is not None and attr_id != signal.signal_id:
        raise BadMessage(
            f"signal_id attribute {attr_id!r} does not match the body's {signal.signal_id!r}"
        )
    follower_id = attributes.get("follower_id") or None
    message_id = message.get("messageId") or message.get("message_id")
    return SignalMessage(
        signal, str(follower_id) if follower_id else None, str(message_id) if message_id else None
    )


def trade_body(signal: Signal, follower_id: str) -> dict[str, Any]:
    """The sidecar's ``POST /trade/signal`` body (the seed's shape, plus id and expiry)."""
    return {
        "strategy": signal.strategy.value,
        "qty_per_leg": signal.qty_per_leg,
        "strike_long": signal.strike_long,
        "strike_short": signal.strike_short,
        "follower_id": follower_id,
        "expiry": signal.expiry.isoformat(),
        "signal_id": signal.signal_id,
    }


@dataclass
class DispatchReport:
    signal_id: str
    accepted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    transient: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "signal_id": self.signal_id,
            "accepted": self.accepted,
            "already": self.already,
            "refused": self.refused,
            "transient": self.transient,
            "skipped": self.skipped,
        }


@dataclass
class SignalDispatcher:
    """The use case. ``sidecar_for(url)`` returns a client for a sidecar base URL."""

    followers: FollowerDirectory
    sidecar_for: Callable[[str], SidecarPort]
    default_sidecar_url: str
    redis: redis.Redis | None = None

    def dispatch(self, message: SignalMessage) -> DispatchReport:
        signal = message.signal
        report = DispatchReport(signal.signal_id)
        for follower in self._targets(message, report):
            marker = f"dispatch:{signal.signal_id}:{follower.id}"
            if self._already(marker):
                report.already.append(follower.id)
                continue
            url = follower.sidecar_url or self.default_sidecar_url
            try:
                reply = self.sidecar_for(url).trade_signal(trade_body(signal, follower.id))
            except SidecarRefused as exc:
                log.error("sidecar refused %s for %s: %s", signal.signal_id, follower.id, exc)
                report.refused[follower.id] = f"{exc.status}"
                self._mark(marker, f"refused:{exc.status}")
                continue
            except SidecarUnavailable as exc:
                log.warning("sidecar unavailable for %s: %s", follower.id, exc)
                report.transient[follower.id] = str(exc)
                continue
            report.accepted.append(follower.id)
            self._mark(marker, f"accepted:{reply.status}")
        if report.transient:
            raise DispatchIncomplete(
                f"signal {signal.signal_id}: transient failures for "
                f"{', '.join(sorted(report.transient))}"
            )
        return report

    def _targets(self, message: SignalMessage, report: DispatchReport) -> list[Follower]:
        eligible: list[Follower] = []
        for follower in self.followers.list_enabled():
            if message.follower_id is not None and follower.id != message.follower_id:
                continue
            if not follower.accepts_new_entries:
                report.skipped[follower.id] = f"state {follower.state.value}"
                continue
            eligible.append(follower)
        if message.follower_id is not None and not eligible and not report.skipped:
            report.skipped[message.follower_id] = "unknown or disabled follower"
        return eligible

    def _already(self, marker: str) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(self.redis.exists(marker))
        except redis.RedisError:
            return False  # the sidecar's own idempotency still holds

    def _mark(self, marker: str, value: str) -> None:
        if self.redis is None:
            return
        try:
            self.redis.set(marker, value, ex=DISPATCHED_TTL_SECONDS)
        except redis.RedisError as exc:
            log.warning("could not record dispatch marker: %s", type(exc).__name__)
