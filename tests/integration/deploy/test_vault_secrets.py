"""The Vault KV v2 backend against a real OpenBao server (same HTTP API as Vault).

Secrets are written the way an operator would (KV v2 ``data`` wrapper, one
path per secret, field ``value``) and read back through spreadpilot.secrets,
including with a token whose policy allows only some paths: the Vault
counterpart of the per-service-account grants on Google Cloud.
"""

from __future__ import annotations

import pytest
from openbao_server import Bao
from pydantic import SecretStr
from spreadpilot.config import Settings
from spreadpilot.secrets import (
    SecretBackendError,
    SecretName,
    SecretNotFoundError,
    VaultSecretSource,
    secret_source,
    settings_with_secrets,
)

# The first use builds OpenBao from its Go module (minutes on a cold cache).
pytestmark = pytest.mark.timeout(1800)

PREFIX = "spreadpilot-it"
TOKEN_VALUE = "bot-token-never-logged"


def _put(bao: Bao, secret_id: str, data: dict[str, str], mount: str = "secret") -> None:
    with bao.client() as http:
        response = http.post(f"/v1/{mount}/data/{PREFIX}/{secret_id}", json={"data": data})
        assert response.status_code in (200, 204), response.text


def _source(bao: Bao, token: str | None = None, **kwargs: object) -> VaultSecretSource:
    return VaultSecretSource(
        bao.addr,
        SecretStr(token or bao.root_token),
        mount_point="secret",
        path_prefix=PREFIX,
        **kwargs,  # type: ignore[arg-type]
    )


def test_reads_a_kv2_secret_as_a_masked_value(bao: Bao) -> None:
    _put(bao, "telegram-bot-token", {"value": TOKEN_VALUE})
    source = _source(bao)
    try:
        secret = source.get(SecretName.TELEGRAM_BOT_TOKEN)
    finally:
        source.close()
    assert secret.get_secret_value() == TOKEN_VALUE
    assert TOKEN_VALUE not in repr(secret)


def test_missing_secret_and_missing_field_name_the_secret(bao: Bao) -> None:
    _put(bao, "sendgrid-api-key", {"other": "x"})
    source = _source(bao)
    try:
        with pytest.raises(SecretNotFoundError, match="MONGO_URI"):
            source.get(SecretName.MONGO_URI)
        with pytest.raises(SecretNotFoundError, match=r"SENDGRID_API_KEY.*'value'"):
            source.get(SecretName.SENDGRID_API_KEY)
    finally:
        source.close()


def test_a_bad_token_is_denied_and_not_echoed(bao: Bao) -> None:
    bad = "s.not-a-real-token-123"
    source = _source(bao, token=bad)
    try:
        with pytest.raises(SecretBackendError) as err:
            source.get(SecretName.TELEGRAM_BOT_TOKEN)
    finally:
        source.close()
    assert "permission denied" in str(err.value)
    assert bad not in str(err.value)


def test_a_policy_scoped_token_reads_only_its_secrets(bao: Bao) -> None:
    _put(bao, "telegram-bot-token", {"value": TOKEN_VALUE})
    _put(bao, "mongo-uri", {"value": "mongodb://u:p@h/db"})
    policy = f'path "secret/data/{PREFIX}/telegram-bot-token" {{ capabilities = ["read"] }}'
    with bao.client() as http:
        assert http.put("/v1/sys/policies/acl/alerts-only", json={"policy": policy}).is_success
        created = http.post("/v1/auth/token/create", json={"policies": ["alerts-only"]})
        assert created.is_success, created.text
        scoped = created.json()["auth"]["client_token"]
    source = _source(bao, token=scoped)
    try:
        assert source.get(SecretName.TELEGRAM_BOT_TOKEN).get_secret_value() == TOKEN_VALUE
        with pytest.raises(SecretBackendError, match=r"MONGO_URI.*permission denied"):
            source.get(SecretName.MONGO_URI)
    finally:
        source.close()


def test_values_are_cached_until_their_ttl(bao: Bao) -> None:
    _put(bao, "sidecar-token", {"value": "first"})
    cached, fresh = _source(bao, cache_ttl=300.0), _source(bao, cache_ttl=0.0)
    try:
        assert cached.get(SecretName.SIDECAR_TOKEN).get_secret_value() == "first"
        assert fresh.get(SecretName.SIDECAR_TOKEN).get_secret_value() == "first"
        _put(bao, "sidecar-token", {"value": "rotated"})
        assert cached.get(SecretName.SIDECAR_TOKEN).get_secret_value() == "first"
        assert fresh.get(SecretName.SIDECAR_TOKEN).get_secret_value() == "rotated"
    finally:
        cached.close()
        fresh.close()


def test_configuration_selects_vault_and_fills_the_settings(bao: Bao) -> None:
    """VAULT_ENABLED, VAULT_ADDR, VAULT_TOKEN, VAULT_MOUNT_POINT: the original bot's names."""
    _put(bao, "telegram-bot-token", {"value": TOKEN_VALUE})
    _put(bao, "pnl-database-url", {"value": "postgresql://sp:pw@10.0.0.5:5432/spreadpilot"})
    settings = Settings(
        vault_enabled=True,
        vault_addr=bao.addr,
        vault_token=bao.root_token,
        vault_mount_point="secret",
        vault_path_prefix=PREFIX,
    )
    source = secret_source(settings, environ={})
    assert isinstance(source, VaultSecretSource)
    filled = settings_with_secrets(
        settings, SecretName.TELEGRAM_BOT_TOKEN, SecretName.PNL_DATABASE_URL, source=source
    )
    source.close()
    assert filled.telegram_bot_token is not None
    assert filled.telegram_bot_token.get_secret_value() == TOKEN_VALUE
    assert filled.pnl_database_url.endswith("@10.0.0.5:5432/spreadpilot")
    assert TOKEN_VALUE not in repr(filled)
