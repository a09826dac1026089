"""The functions' wiring reads its secrets through spreadpilot.secrets, once per instance.

The source here is the real ``EnvSecretSource`` over a private mapping (what a
Secret Manager or Vault backend returns is covered in tests/unit/deploy and,
against a real OpenBao, tests/integration/deploy); what is tested is the
wiring: which factory asks for what, optional secrets, and the caching.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from spreadpilot.config import Settings, get_settings
from spreadpilot.secrets import EnvSecretSource, SecretName, SecretNotFoundError

import functions.runtime as runtime


class CountingSource(EnvSecretSource):
    """The env backend over a fixed mapping, counting reads."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.reads: list[str] = []

    def get(self, name: SecretName | str) -> SecretStr:
        self.reads.append(str(name))
        return super().get(name)


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    get_settings.cache_clear()
    runtime._secret_source.cache_clear()
    runtime.secret_settings.cache_clear()
    yield
    get_settings.cache_clear()
    runtime.secret_settings.cache_clear()  # (_secret_source may still be patched here)


def test_env_backend_is_the_settings_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://from-env:27017")
    assert runtime._secret_source() is None
    cfg = runtime.secret_settings(SecretName.MONGO_URI)
    assert cfg is get_settings() and cfg.mongo_uri == "mongodb://from-env:27017"


def test_secrets_come_from_the_source_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_BACKEND", "gcp")
    monkeypatch.setenv("MONGO_URI", "mongodb://env-value-not-used:1")
    source = CountingSource({"MONGO_URI": "mongodb://u:p@atlas/db", "SIDECAR_TOKEN": "tok"})
    monkeypatch.setattr(runtime, "_secret_source", lambda: source)
    first = runtime.secret_settings(SecretName.MONGO_URI)
    again = runtime.secret_settings(SecretName.MONGO_URI)
    assert first is again and first.mongo_uri == "mongodb://u:p@atlas/db"
    assert source.reads == ["MONGO_URI"]  # cached: one read per instance
    assert first.sidecar_token is None  # not asked for: never read


def test_a_missing_required_secret_fails_and_an_optional_one_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRETS_BACKEND", "vault")
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    source = CountingSource({"TELEGRAM_BOT_TOKEN": "bot"})
    monkeypatch.setattr(runtime, "_secret_source", lambda: source)
    with pytest.raises(SecretNotFoundError, match="PNL_DATABASE_URL"):
        runtime.secret_settings(SecretName.PNL_DATABASE_URL)
    channels = (SecretName.TELEGRAM_BOT_TOKEN, SecretName.SENDGRID_API_KEY)
    cfg = runtime.secret_settings(*channels, optional=channels)
    assert cfg.telegram_bot_token is not None
    assert cfg.telegram_bot_token.get_secret_value() == "bot"
    assert cfg.sendgrid_api_key is None
