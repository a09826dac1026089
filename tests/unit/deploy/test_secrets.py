"""spreadpilot.secrets: the environment backend, masking, errors, backend choice.

The Vault backend runs against a real OpenBao server in
tests/integration/deploy. The Secret Manager backend talks to Google only in a
deployment; here its argument checks and its error path are exercised with
the real client library pointed at a closed local port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr
from spreadpilot.config import Settings
from spreadpilot.secrets import (
    CATALOGUE,
    EnvSecretSource,
    GcpSecretSource,
    SecretBackendError,
    SecretError,
    SecretName,
    SecretNotFoundError,
    VaultSecretSource,
    backend_name,
    secret_source,
    settings_with_secrets,
)

VALUE = "tok-123-do-not-print"


def test_env_backend_returns_a_masked_value() -> None:
    source = EnvSecretSource({"TELEGRAM_BOT_TOKEN": VALUE})
    secret = source.get(SecretName.TELEGRAM_BOT_TOKEN)
    assert isinstance(secret, SecretStr)
    assert secret.get_secret_value() == VALUE
    assert VALUE not in repr(secret) and VALUE not in str(secret)
    assert VALUE not in f"{secret}"


def test_env_backend_accepts_the_plain_string_name() -> None:
    assert EnvSecretSource({"MONGO_URI": "mongodb://x"}).get("MONGO_URI").get_secret_value()


def test_missing_and_empty_secrets_name_the_variable() -> None:
    with pytest.raises(SecretNotFoundError) as missing:
        EnvSecretSource({}).get(SecretName.SENDGRID_API_KEY)
    assert "SENDGRID_API_KEY" in str(missing.value)
    assert missing.value.backend == "env"
    with pytest.raises(SecretNotFoundError):
        EnvSecretSource({"SENDGRID_API_KEY": ""}).get(SecretName.SENDGRID_API_KEY)


def test_file_variant_reads_the_value_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE + "\n", encoding="utf-8")
    source = EnvSecretSource({"SIDECAR_TOKEN_FILE": str(path)})
    assert source.get(SecretName.SIDECAR_TOKEN).get_secret_value() == VALUE


def test_unreadable_file_is_a_backend_error_without_the_path_contents(tmp_path: Path) -> None:
    source = EnvSecretSource({"SIDECAR_TOKEN_FILE": str(tmp_path / "absent")})
    with pytest.raises(SecretBackendError) as err:
        source.get(SecretName.SIDECAR_TOKEN)
    assert "SIDECAR_TOKEN_FILE" in str(err.value)


def test_unknown_secret_names_the_known_ones() -> None:
    with pytest.raises(SecretError) as err:
        EnvSecretSource({"NOPE": "x"}).get("NOPE")
    assert "unknown secret" in str(err.value) and "MONGO_URI" in str(err.value)


def test_catalogue_matches_the_configuration_model() -> None:
    """Every secret fills a real settings field, so the env backend and Settings agree."""
    fields = set(Settings.model_fields)
    for name, spec in CATALOGUE.items():
        assert spec.name is name
        assert spec.settings_field is None or spec.settings_field in fields, spec
        if spec.settings_field:
            assert spec.settings_field.upper() == name.value
    assert len({s.secret_id for s in CATALOGUE.values()}) == len(CATALOGUE)
    assert set(CATALOGUE) == set(SecretName)


def test_backend_is_chosen_by_configuration() -> None:
    assert backend_name(Settings(secrets_backend="env")) == "env"
    assert backend_name(Settings(secrets_backend="gcp")) == "gcp"
    vault = Settings(vault_enabled=True, vault_addr="http://127.0.0.1:1", vault_token="t")
    assert backend_name(vault) == "vault"
    assert isinstance(secret_source(Settings(), environ={}), EnvSecretSource)
    gcp = secret_source(
        Settings(secrets_backend="gcp", google_cloud_project="my-project-1"), environ={}
    )
    assert isinstance(gcp, GcpSecretSource) and gcp.project == "my-project-1"
    built = secret_source(vault, environ={})
    assert isinstance(built, VaultSecretSource)
    assert built.path(SecretName.MONGO_URI) == "secret/data/spreadpilot/mongo-uri"
    built.close()


def test_backend_locations_are_settings_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VAULT_PATH_PREFIX, VAULT_NAMESPACE and GOOGLE_CLOUD_PROJECT are Settings fields:
    read (and documented) by the one configuration model, not from os.environ aside."""
    for field in ("vault_path_prefix", "vault_namespace", "google_cloud_project"):
        assert Settings.model_fields[field].description
    monkeypatch.setenv("VAULT_PATH_PREFIX", "sp/staging")
    monkeypatch.setenv("VAULT_NAMESPACE", "team-a")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-from-env")
    monkeypatch.setenv("PUBSUB_PROJECT_ID", "pubsub-proj")
    vault = Settings(secrets_backend="vault", vault_addr="http://127.0.0.1:1", vault_token="t")
    assert (vault.vault_path_prefix, vault.vault_namespace) == ("sp/staging", "team-a")
    # ``environ`` is only the env backend's secret store: it does not steer the others.
    built = secret_source(vault, environ={"VAULT_PATH_PREFIX": "ignored"})
    assert isinstance(built, VaultSecretSource)
    assert built.path(SecretName.MONGO_URI) == "secret/data/sp/staging/mongo-uri"
    built.close()
    gcp = secret_source(Settings(secrets_backend="gcp"), environ={})
    assert isinstance(gcp, GcpSecretSource) and gcp.project == "proj-from-env"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    gcp = secret_source(Settings(secrets_backend="gcp"), environ={})
    assert isinstance(gcp, GcpSecretSource) and gcp.project == "pubsub-proj"


def test_vault_backend_without_a_token_is_refused() -> None:
    settings = Settings(secrets_backend="vault", vault_addr="http://127.0.0.1:1")
    with pytest.raises(SecretBackendError, match="VAULT_TOKEN"):
        secret_source(settings, environ={})


def test_settings_with_secrets_is_a_no_op_for_the_env_backend() -> None:
    settings = Settings(secrets_backend="env")
    assert settings_with_secrets(settings, SecretName.MONGO_URI) is settings


def test_settings_with_secrets_fills_fields_from_another_source() -> None:
    class Fixed:
        backend = "fixed"

        def get(self, name: SecretName | str) -> SecretStr:
            return SecretStr(f"value-of-{name}")

    settings = Settings(secrets_backend="gcp")
    filled = settings_with_secrets(
        settings, SecretName.TELEGRAM_BOT_TOKEN, SecretName.MONGO_URI, source=Fixed()
    )
    assert filled.telegram_bot_token is not None
    assert filled.telegram_bot_token.get_secret_value() == "value-of-TELEGRAM_BOT_TOKEN"
    assert filled.mongo_uri == "value-of-MONGO_URI"
    assert filled.sendgrid_api_key is None  # not asked for: never fetched


# --- Secret Manager: argument checks and the error path ---------------------------------


@pytest.mark.parametrize("project", ["", "UPPER", "a", "bad_underscore", "x" * 40])
def test_gcp_backend_rejects_invalid_projects(project: str) -> None:
    with pytest.raises(SecretBackendError, match="project id"):
        GcpSecretSource(project)


def test_gcp_backend_rejects_invalid_versions_and_timeouts() -> None:
    with pytest.raises(SecretBackendError, match="version"):
        GcpSecretSource("my-project-1", version="newest")
    with pytest.raises(SecretBackendError, match="timeout"):
        GcpSecretSource("my-project-1", timeout=0)


def test_gcp_backend_names_the_resource_it_reads() -> None:
    source = GcpSecretSource("my-project-1", version="3")
    assert source.resource_name(SecretName.SENDGRID_API_KEY) == (
        "projects/my-project-1/secrets/sendgrid-api-key/versions/3"
    )
    assert GcpSecretSource("123456789012").resource_name("MONGO_URI").endswith("/latest")
    with pytest.raises(SecretError, match="unknown secret"):
        source.resource_name("NOT_A_SECRET")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gcp_backend_unreachable_service_is_a_clear_error() -> None:
    """The real client, real gRPC, nothing listening: the error names the secret only."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"127.0.0.1:{_closed_port()}"},
        transport="grpc",
    )
    source = GcpSecretSource("my-project-1", client=client, timeout=1.0)
    with pytest.raises(SecretBackendError) as err:
        source.get(SecretName.TELEGRAM_BOT_TOKEN)
    message = str(err.value)
    assert "TELEGRAM_BOT_TOKEN" in message and "gcp" in message
    assert err.value.__cause__ is None  # the client's exception (and its detail) is dropped


# --- Vault: argument checks (the server tests are integration tests) -------------------------


@pytest.mark.parametrize(
    ("addr", "token", "mount", "match"),
    [
        ("127.0.0.1:8200", VALUE, "secret", "http"),
        ("http://127.0.0.1:8200", "", "secret", "VAULT_TOKEN is empty"),
        ("http://127.0.0.1:8200", VALUE, "../sys", "VAULT_MOUNT_POINT"),
        ("http://127.0.0.1:8200", VALUE, "a//b", "VAULT_MOUNT_POINT"),
    ],
)
def test_vault_backend_validates_its_configuration(
    addr: str, token: str, mount: str, match: str
) -> None:
    with pytest.raises(SecretBackendError, match=match) as err:
        VaultSecretSource(addr, SecretStr(token), mount_point=mount)
    assert token == "" or token not in str(err.value)


def test_vault_paths_follow_kv_version_2() -> None:
    source = VaultSecretSource(
        "http://127.0.0.1:8200/", SecretStr("t"), mount_point="/kv/", path_prefix="sp/prod"
    )
    assert source.addr == "http://127.0.0.1:8200"
    assert source.path(SecretName.SIDECAR_TOKEN) == "kv/data/sp/prod/sidecar-token"
    source.close()
