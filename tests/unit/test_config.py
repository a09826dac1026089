"""The one configuration model: defaults, env names, validation, secret masking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import time
from decimal import Decimal

import pytest
from pydantic import ValidationError
from spreadpilot.config import Settings, get_settings, parse_alert_routing, redacted_url
from spreadpilot.domain.alerts import AlertChannel, Severity


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_spec_defaults() -> None:
    s = Settings()
    assert (s.ib_gateway_host, s.ib_gateway_port, s.ib_client_id) == ("127.0.0.1", 4002, 1)
    assert s.ib_trading_mode == "paper" and not s.is_live
    assert (s.min_price, s.price_increment, s.max_attempts, s.timeout_seconds) == (
        0.70,
        0.01,
        10,
        5,
    )
    assert s.polling_interval_seconds == 1.0
    assert s.position_check_interval_seconds == 60
    assert s.mtm_interval_seconds == 30
    assert (s.tv_critical, s.tv_risk) == (0.10, 1.00)
    assert s.signal_time == time(9, 27)
    assert s.redis_url == "redis://localhost:6379"
    assert s.sidecar_port == 8001
    assert s.secrets_backend == "env" and not s.vault_enabled
    assert s.commission_fx_rate is None
    assert s.channels_for(Severity.CRITICAL) == (AlertChannel.TELEGRAM, AlertChannel.EMAIL)
    assert s.channels_for(Severity.WARNING) == (AlertChannel.TELEGRAM,)
    assert s.channels_for(Severity.INFO) == ()


def test_every_field_is_documented() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_GATEWAY_PORT", "4001")
    monkeypatch.setenv("IB_TRADING_MODE", "live")
    monkeypatch.setenv("MIN_PRICE", "0.75")
    monkeypatch.setenv("SIGNAL_TIME", "9:45")
    monkeypatch.setenv("COMMISSION_FX_RATE", "0.92")
    monkeypatch.setenv("MAX_SPREAD_WIDTH", "5")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")  # empty = unset
    s = Settings()
    assert s.ib_gateway_port == 4001 and s.is_live
    assert s.min_price == 0.75 and s.signal_time == time(9, 45)
    assert s.commission_fx_rate == Decimal("0.92")
    assert s.telegram_bot_token is None
    assert s.signal_limits().max_spread_width == 5.0


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("MIN_PRICE", "abc", "min_price"),
        ("SIGNAL_TIME", "25:00", "signal_time"),
        ("IB_GATEWAY_PORT", "99999", "ib_gateway_port"),
        ("IB_TRADING_MODE", "yolo", "ib_trading_mode"),
        ("PRICE_INCREMENT", "0.015", "multiple of 0.01"),
        ("TV_CRITICAL", "2.0", "TV_CRITICAL (2.0) must not exceed TV_RISK (1.0)"),
        ("SECRETS_BACKEND", "vault", "VAULT_ADDR is required"),
        ("ALERT_ROUTING", "CRITICAL=pigeon", "unknown alert channel 'pigeon'"),
        ("ALERT_ROUTING", "LOUD=telegram", "unknown severity 'LOUD'"),
        ("ALERT_ROUTING", "{not json", "not valid JSON"),
    ],
)
def test_validation_errors_are_clear(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert fragment in str(info.value)


def test_alert_routing_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ROUTING", json.dumps({"info": "email", "CRITICAL": ["telegram"]}))
    s = Settings()
    assert s.channels_for(Severity.INFO) == (AlertChannel.EMAIL,)
    assert s.channels_for(Severity.CRITICAL) == (AlertChannel.TELEGRAM,)
    assert s.channels_for(Severity.WARNING) == ()
    compact = parse_alert_routing("CRITICAL=telegram+email+telegram, WARNING=email")
    assert compact == {
        Severity.CRITICAL: (AlertChannel.TELEGRAM, AlertChannel.EMAIL),
        Severity.WARNING: (AlertChannel.EMAIL,),
    }
    assert parse_alert_routing("") == {}


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_TOKEN", "tok-s3cret")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:bot-s3cret")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.s3cret")
    monkeypatch.setenv("VAULT_TOKEN", "hvs.s3cret")
    monkeypatch.setenv(
        "MONGO_URI", "mongodb://app:pw-s3cret@db1:27017,db2:27017/sp?authSource=admin"
    )
    monkeypatch.setenv("PNL_DATABASE_URL", "postgresql://sp:pg-s3cret@127.0.0.1:5432/sp")
    monkeypatch.setenv("REDIS_URL", "redis://:rd-s3cret@cache:6379/0")
    s = Settings()
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cret" not in text
    assert s.sidecar_token is not None and s.sidecar_token.get_secret_value() == "tok-s3cret"
    assert "mongodb://app:***@db1:27017,db2:27017/sp?authSource=admin" in repr(s)
    assert s.mongo_uri.startswith("mongodb://app:pw-s3cret@")  # the program still gets it


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379", "redis://localhost:6379"),
        ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://sp:pw@h:5432/db", "postgresql://sp:***@h:5432/db"),
        ("postgresql://sp@h/db", "postgresql://sp@h/db"),
        ("https://x/api?token=abc&user=bob", "https://x/api?token=***&user=bob"),
        ("not a url", "not a url"),
    ],
)
def test_redacted_url(url: str, expected: str) -> None:
    assert redacted_url(url) == expected


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("MIN_PRICE", "0.9")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().min_price == 0.9
