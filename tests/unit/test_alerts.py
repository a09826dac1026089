"""The one alert schema (SPEC section 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError
from spreadpilot.domain.alerts import Alert, AlertType, Severity, default_severity

AT = datetime(2026, 3, 2, 14, 31, tzinfo=UTC)

SPEC_TYPES = """SIGNAL_INVALID, SIGNAL_CHANGED, NO_MARGIN, MID_TOO_LOW, LIMIT_REACHED,
PARTIAL_FILL, GATEWAY_UNREACHABLE, EXECUTION_FILLED, POSITION_LIMIT, LEGGED_POSITION, TV_SAFE,
TV_RISK, TV_CRITICAL, TV_LIQUIDATED, ASSIGNMENT_DETECTED, ASSIGNMENT_RESOLVED,
KILL_SWITCH, COMPONENT_DOWN"""


def test_every_spec_type_exists_and_has_a_default_severity() -> None:
    names = {n.strip() for n in SPEC_TYPES.replace("\n", " ").split(",")}
    assert {t.value for t in AlertType} == names
    for alert_type in AlertType:
        assert isinstance(default_severity(alert_type), Severity)


def test_spec_fixed_severities() -> None:
    assert default_severity(AlertType.LIMIT_REACHED) is Severity.CRITICAL
    assert default_severity(AlertType.PARTIAL_FILL) is Severity.WARNING
    assert default_severity(AlertType.EXECUTION_FILLED) is Severity.INFO
    assert default_severity(AlertType.GATEWAY_UNREACHABLE) is Severity.CRITICAL
    assert default_severity(AlertType.LEGGED_POSITION) is Severity.CRITICAL
    assert default_severity(AlertType.ASSIGNMENT_DETECTED) is Severity.CRITICAL


def test_create_and_json_round_trip() -> None:
    alert = Alert.create(
        AlertType.NO_MARGIN,
        None,
        "not enough margin",
        {
            "init_margin_change": Decimal("1250.00"),
            "available_funds": 900.0,
            "equity_with_loan": 5000,
        },
        at=AT,
        follower_id="follower123",
        id="no-margin-sig1-follower123",
    )
    assert alert.severity is Severity.WARNING
    payload = json.loads(alert.to_json())
    assert set(payload) == {
        "id",
        "type",
        "severity",
        "follower_id",
        "message",
        "params",
        "created_at",
    }
    assert payload["type"] == "NO_MARGIN" and payload["severity"] == "WARNING"
    assert payload["created_at"] == "2026-03-02T14:31:00Z"
    again = Alert.from_json(alert.to_json())
    assert again.id == alert.id and again.type is AlertType.NO_MARGIN
    assert again.params["available_funds"] == 900.0


def test_default_id_is_a_uuid_and_times_become_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    a = Alert.create(
        AlertType.KILL_SWITCH,
        Severity.CRITICAL,
        "halt",
        {},
        datetime(2026, 3, 2, 9, 31, tzinfo=eastern),
    )
    b = Alert.create(AlertType.KILL_SWITCH, Severity.CRITICAL, "halt", None, AT)
    assert a.id != b.id and len(a.id) == 36
    assert a.created_at == AT and a.created_at.tzinfo == UTC
    assert b.follower_id is None and b.params == {}


def test_invalid_alerts_are_refused() -> None:
    with pytest.raises(ValidationError):
        Alert.create(AlertType.KILL_SWITCH, None, "x", {}, datetime(2026, 3, 2, 9, 31))
    with pytest.raises(ValidationError):
        Alert.from_json(
            json.dumps(
                {"id": "1", "type": "NOPE", "severity": "INFO", "message": ""}
                | {"created_at": "2026-03-02T14:31:00Z"}
            )
        )
