"""The one alert schema every producer and the fan-out share (SPEC section 7).

``{id, type, severity, follower_id?, message, params{...}, created_at}``, as
JSON in the ``alert`` field of the Redis stream and on the Pub/Sub topic. The
``id`` is what the fan-out de-duplicates on, so producers that may emit the
same event twice (retries, restarts) should pass a deterministic id.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertChannel(StrEnum):
    """Where the fan-out can deliver an alert (routing is configuration)."""

    TELEGRAM = "telegram"
    EMAIL = "email"


class AlertType(StrEnum):
    SIGNAL_INVALID = "SIGNAL_INVALID"
    SIGNAL_CHANGED = "SIGNAL_CHANGED"
    NO_MARGIN = "NO_MARGIN"
    MID_TOO_LOW = "MID_TOO_LOW"
    LIMIT_REACHED = "LIMIT_REACHED"
    PARTIAL_FILL = "PARTIAL_FILL"
    GATEWAY_UNREACHABLE = "GATEWAY_UNREACHABLE"
    EXECUTION_FILLED = "EXECUTION_FILLED"
    POSITION_LIMIT = "POSITION_LIMIT"
    LEGGED_POSITION = "LEGGED_POSITION"
    TV_SAFE = "TV_SAFE"
    TV_RISK = "TV_RISK"
    TV_CRITICAL = "TV_CRITICAL"
    TV_LIQUIDATED = "TV_LIQUIDATED"
    ASSIGNMENT_DETECTED = "ASSIGNMENT_DETECTED"
    ASSIGNMENT_RESOLVED = "ASSIGNMENT_RESOLVED"
    KILL_SWITCH = "KILL_SWITCH"
    COMPONENT_DOWN = "COMPONENT_DOWN"


# SPEC fixes LIMIT_REACHED, GATEWAY_UNREACHABLE, LEGGED_POSITION and
# ASSIGNMENT_DETECTED as CRITICAL, PARTIAL_FILL as WARNING and EXECUTION_FILLED
# as INFO; the rest follow from whether money is at risk (CRITICAL), a trade
# did not happen (WARNING), or things are fine (INFO).
_DEFAULT_SEVERITY: dict[AlertType, Severity] = {
    AlertType.SIGNAL_INVALID: Severity.CRITICAL,
    AlertType.SIGNAL_CHANGED: Severity.CRITICAL,
    AlertType.NO_MARGIN: Severity.WARNING,
    AlertType.MID_TOO_LOW: Severity.WARNING,
    AlertType.LIMIT_REACHED: Severity.CRITICAL,
    AlertType.PARTIAL_FILL: Severity.WARNING,
    AlertType.GATEWAY_UNREACHABLE: Severity.CRITICAL,
    AlertType.EXECUTION_FILLED: Severity.INFO,
    AlertType.POSITION_LIMIT: Severity.WARNING,
    AlertType.LEGGED_POSITION: Severity.CRITICAL,
    AlertType.TV_SAFE: Severity.INFO,
    AlertType.TV_RISK: Severity.WARNING,
    AlertType.TV_CRITICAL: Severity.CRITICAL,
    AlertType.TV_LIQUIDATED: Severity.CRITICAL,
    AlertType.ASSIGNMENT_DETECTED: Severity.CRITICAL,
    AlertType.ASSIGNMENT_RESOLVED: Severity.WARNING,
    AlertType.KILL_SWITCH: Severity.CRITICAL,
    AlertType.COMPONENT_DOWN: Severity.CRITICAL,
}


def default_severity(alert_type: AlertType) -> Severity:
    """The severity an alert of ``alert_type`` has unless the producer says otherwise."""
    return _DEFAULT_SEVERITY[alert_type]


# An alert is read by a person and must always fit the transports (the fan-out
# refuses Pub/Sub messages over 64 KiB; Telegram takes 4096 characters). Text
# a producer copies from outside (a pasted blob in a sheet cell, an error
# body) is cut to these sizes, visibly, instead of making the alert
# undeliverable.
MAX_MESSAGE_CHARS = 2000
MAX_PARAM_TEXT_CHARS = 500
MAX_PARAM_ITEMS = 30
MAX_PARAMS_JSON_CHARS = 32_000
_MAX_PARAM_DEPTH = 3


def _cut_text(text: str, limit: int) -> str:
    """At most ``limit`` characters, saying how many were cut (idempotent)."""
    if len(text) <= limit:
        return text
    suffix = f"… ({len(text)} characters in all)"
    return text[: max(0, limit - len(suffix))] + suffix


def _bounded(value: Any, depth: int = 0) -> Any:
    """``value`` with long texts cut and long collections shortened (types kept)."""
    if isinstance(value, str):
        return _cut_text(value, MAX_PARAM_TEXT_CHARS)
    if isinstance(value, dict):
        if depth >= _MAX_PARAM_DEPTH:
            return _cut_text(repr(value), MAX_PARAM_TEXT_CHARS)
        items = list(value.items())
        kept = {k: _bounded(v, depth + 1) for k, v in items[:MAX_PARAM_ITEMS]}
        if len(items) > MAX_PARAM_ITEMS:
            kept["…"] = f"{len(items) - MAX_PARAM_ITEMS} more entries"
        return kept
    if isinstance(value, list | tuple):
        if depth >= _MAX_PARAM_DEPTH:
            return _cut_text(repr(value), MAX_PARAM_TEXT_CHARS)
        kept_items = [_bounded(v, depth + 1) for v in value[:MAX_PARAM_ITEMS]]
        if len(value) > MAX_PARAM_ITEMS:
            kept_items.append(f"… {len(value) - MAX_PARAM_ITEMS} more items")
        return type(value)(kept_items) if isinstance(value, tuple) else kept_items
    return value


class Alert(BaseModel):
    """One alert. Immutable; ``created_at`` is timezone-aware UTC.

    ``message`` and ``params`` are bounded (see MAX_* above) so that no
    producer can make an alert too large to deliver.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    type: AlertType
    severity: Severity
    follower_id: str | None = None
    message: str
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime

    @field_validator("message")
    @classmethod
    def _short_message(cls, value: str) -> str:
        return _cut_text(value, MAX_MESSAGE_CHARS)

    @field_validator("params")
    @classmethod
    def _small_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        bounded: dict[str, Any] = _bounded(value)
        text = json.dumps(bounded, default=str)
        if len(text) > MAX_PARAMS_JSON_CHARS:  # only deeply nested params get here
            return {"truncated_params": _cut_text(text, MAX_PARAM_TEXT_CHARS * 4)}
        return bounded

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        return value.astimezone(UTC)

    @classmethod
    def create(
        cls,
        type: AlertType,
        severity: Severity | None,
        message: str,
        params: dict[str, Any] | None,
        at: datetime,
        follower_id: str | None = None,
        id: str | None = None,
    ) -> Alert:
        """Build an alert; ``severity=None`` takes the type's default.

        ``at`` comes from the caller's clock (the domain never reads time).
        """
        return cls(
            id=id if id is not None else str(uuid.uuid4()),
            type=type,
            severity=severity if severity is not None else default_severity(type),
            follower_id=follower_id,
            message=message,
            params=dict(params or {}),
            created_at=at,
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        return cls.model_validate_json(text)
