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


def test_function_settings_defaults() -> None:
    """What the Cloud Functions read lives in the one model, with production defaults."""
    s = Settings()
    assert s.sheets_api_base == "https://sheets.googleapis.com"
    assert s.google_sheets_api_key is None and s.google_sheet_worksheet is None
    assert s.poll_duration_seconds == 55.0  # fired every minute: one invocation per minute
    assert (s.alert_max_attempts, s.alert_retry_base_seconds, s.alert_retry_max_seconds) == (
        4,
        0.5,
        8.0,
    )
    assert s.sidecar_use_id_token is False


def test_function_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEETS_API_BASE", "http://127.0.0.1:8765/")
    monkeypatch.setenv("GOOGLE_SHEETS_API_KEY", "AIza-s3cret")
    monkeypatch.setenv("GOOGLE_SHEET_WORKSHEET", "Signals")
    monkeypatch.setenv("POLL_DURATION_SECONDS", "12.5")
    monkeypatch.setenv("ALERT_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("ALERT_RETRY_BASE_SECONDS", "0")
    monkeypatch.setenv("ALERT_RETRY_MAX_SECONDS", "0")
    monkeypatch.setenv("SIDECAR_USE_ID_TOKEN", "true")
    s = Settings()
    assert s.sheets_api_base == "http://127.0.0.1:8765"  # trailing slash dropped
    assert s.google_sheets_api_key is not None
    assert s.google_sheets_api_key.get_secret_value() == "AIza-s3cret"
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cret" not in text
    assert s.google_sheet_worksheet == "Signals"
    assert s.poll_duration_seconds == 12.5
    assert (s.alert_max_attempts, s.alert_retry_base_seconds, s.alert_retry_max_seconds) == (
        6,
        0.0,
        0.0,
    )
    assert s.sidecar_use_id_token is True


def test_functions_use_the_one_model() -> None:
    """The functions' wiring reads ``get_settings()``; there is no second settings class."""
    from pydantic_settings import BaseSettings

    import functions.runtime as runtime

    models = [
        v
        for v in vars(runtime).values()
        if isinstance(v, type) and issubclass(v, BaseSettings) and v is not Settings
    ]
    assert models == []


def test_sidecar_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar's knobs are fields of the one model, under their SIDECAR_* names."""
    s = Settings()
    assert s.sidecar_host == "127.0.0.1"
    assert s.sidecar_execution_max_age_seconds == 900.0
    assert s.sidecar_reconnect_initial_seconds == 0.5 and s.sidecar_reconnect_max_seconds == 30
    assert s.sidecar_liquidation_fill_wait_seconds == 15.0 and s.sidecar_mongo_timeout_ms == 2000
    assert s.sidecar_service_accounts() == frozenset() and s.sidecar_market_data_follower is None
    monkeypatch.setenv("SIDECAR_HOST", "0.0.0.0")
    monkeypatch.setenv("SIDECAR_EXECUTION_MAX_AGE_SECONDS", "120")
    monkeypatch.setenv("SIDECAR_ALLOWED_SERVICE_ACCOUNTS", " Fn@P.iam.gserviceaccount.com, ,b@x.io")
    monkeypatch.setenv("SIDECAR_MARKET_DATA_FOLLOWER", "quotes")
    monkeypatch.setenv("SIDECAR_READY_TIMEOUT_SECONDS", "0")
    s = Settings()
    assert s.sidecar_host == "0.0.0.0" and s.sidecar_execution_max_age_seconds == 120.0
    assert s.sidecar_service_accounts() == {"fn@p.iam.gserviceaccount.com", "b@x.io"}
    assert s.sidecar_market_data_follower == "quotes" and s.sidecar_ready_timeout_seconds == 0


def test_the_sidecar_has_no_settings_model_of_its_own() -> None:
    import importlib
    import pkgutil

    from pydantic_settings import BaseSettings

    import sidecar

    for info in pkgutil.walk_packages(sidecar.__path__, "sidecar."):
        module = importlib.import_module(info.name)
        models = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, BaseSettings) and v is not Settings
        ]
        assert models == [], info.name


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
        ("SHEETS_API_BASE", "sheets.googleapis.com", "SHEETS_API_BASE must be an http(s) URL"),
        ("POLL_DURATION_SECONDS", "0", "poll_duration_seconds"),
        ("POLL_DURATION_SECONDS", "600", "poll_duration_seconds"),
        ("ALERT_MAX_ATTEMPTS", "0", "alert_max_attempts"),
        ("ALERT_RETRY_BASE_SECONDS", "-1", "alert_retry_base_seconds"),
        ("ALERT_RETRY_MAX_SECONDS", "0.1", "must not be below ALERT_RETRY_BASE_SECONDS (0.5)"),
        ("SIDECAR_USE_ID_TOKEN", "maybe", "sidecar_use_id_token"),
        ("SIDECAR_EXECUTION_MAX_AGE_SECONDS", "0", "sidecar_execution_max_age_seconds"),
        ("SIDECAR_MONGO_TIMEOUT_MS", "5", "sidecar_mongo_timeout_ms"),
        ("SIDECAR_REQUEST_TIMEOUT_SECONDS", "-1", "sidecar_request_timeout_seconds"),
        ("SIDECAR_RECONNECT_MAX_SECONDS", "0.1", "must not be below SIDECAR_RECONNECT_INITIAL"),
        ("SIDECAR_ALLOWED_SERVICE_ACCOUNTS", "functions", "is not an e-mail address"),
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
