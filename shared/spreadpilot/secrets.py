"""The one secret source: environment variables, Google Secret Manager or Vault KV v2.

Why one module: every process (the sidecar, each Cloud Function, the CLI) needs
the same handful of credentials, and where they live differs by deployment.
Locally and in tests they are environment variables; on Google Cloud they are
Secret Manager secrets (the platform injects them as environment variables
into the functions, or a process reads them itself with ``SECRETS_BACKEND=gcp``);
operators coming from the original bot keep them in HashiCorp Vault (or
OpenBao, which speaks the same API). Code asks for a secret by its
:class:`SecretName`; configuration (``SECRETS_BACKEND`` = ``env`` | ``gcp`` |
``vault``, or the older ``VAULT_ENABLED=true``) decides where it comes from.

Rules every backend follows, because secrets leak through logs and tracebacks
far more often than through anything else:

- values come back as :class:`pydantic.SecretStr`, whose ``repr`` and ``str``
  are masked, so an accidental ``log.info(value)`` prints ``**********``;
- nothing here logs a value, and errors name the secret and the backend but
  never include the value (nor the Vault token);
- a missing or empty secret is an error naming it and saying where it was
  looked for, so a misconfigured deployment fails at the first use with a
  message an operator can act on.

The catalogue (:data:`CATALOGUE`) is also what the deployment is checked
against: Terraform declares one Secret Manager secret per entry, and tests
verify that each function's service account is granted exactly the secrets
that function's code reads.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import SecretStr

if TYPE_CHECKING:
    from spreadpilot.config import Settings

BackendName = Literal["env", "gcp", "vault"]

# Secret Manager ids: letters, digits, '-' and '_', at most 255 characters.
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# Google Cloud project ids (and numeric project numbers).
_PROJECT_ID = re.compile(r"^(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
# KV v2 paths: slash-separated segments without '..' tricks or empty segments.
_VAULT_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class SecretName(StrEnum):
    """Every secret the code may read. The value is the environment variable name.

    The names are the ones the configuration model (``spreadpilot.config``)
    already reads, so the ``env`` backend and ``Settings`` always agree.
    """

    SIDECAR_TOKEN = "SIDECAR_TOKEN"
    TELEGRAM_BOT_TOKEN = "TELEGRAM_BOT_TOKEN"
    SENDGRID_API_KEY = "SENDGRID_API_KEY"
    MONGO_URI = "MONGO_URI"
    PNL_DATABASE_URL = "PNL_DATABASE_URL"
    GOOGLE_SHEETS_API_KEY = "GOOGLE_SHEETS_API_KEY"


@dataclass(frozen=True)
class SecretSpec:
    """Where one secret lives in each backend, and which setting it fills."""

    name: SecretName
    secret_id: str  # Secret Manager secret id and Vault KV path segment
    settings_field: str | None  # the ``Settings`` field it fills, if any
    description: str


CATALOGUE: Mapping[SecretName, SecretSpec] = {
    spec.name: spec
    for spec in (
        SecretSpec(
            SecretName.SIDECAR_TOKEN,
            "sidecar-token",
            "sidecar_token",
            "Static bearer token of the sidecar HTTP API.",
        ),
        SecretSpec(
            SecretName.TELEGRAM_BOT_TOKEN,
            "telegram-bot-token",
            "telegram_bot_token",
            "Telegram Bot API token of the alert bot.",
        ),
        SecretSpec(
            SecretName.SENDGRID_API_KEY,
            "sendgrid-api-key",
            "sendgrid_api_key",
            "SendGrid v3 API key for e-mailed alerts.",
        ),
        SecretSpec(
            SecretName.MONGO_URI,
            "mongo-uri",
            "mongo_uri",
            "MongoDB (Atlas) connection URI, credentials included.",
        ),
        SecretSpec(
            SecretName.PNL_DATABASE_URL,
            "pnl-database-url",
            "pnl_database_url",
            "PostgreSQL URL of the P&L database, password included.",
        ),
        SecretSpec(
            SecretName.GOOGLE_SHEETS_API_KEY,
            "sheets-api-key",
            "google_sheets_api_key",
            "Sheets API key, for a sheet shared by link; unset, the runtime's own "
            "service account reads the sheet (share it with that account).",
        ),
    )
}


class SecretError(Exception):
    """A secret could not be read. The message names it, never its value."""

    def __init__(self, name: str, backend: str, reason: str) -> None:
        super().__init__(f"secret {name} ({backend}): {reason}")
        self.secret_name = name
        self.backend = backend
        self.reason = reason


class SecretNotFoundError(SecretError):
    """The backend answered, and the secret is not there (or is empty)."""


class SecretBackendError(SecretError):
    """The backend could not be asked: unreachable, denied, or misconfigured."""


class SecretSource(Protocol):
    """Anything that turns a secret name into its value."""

    backend: str

    def get(self, name: SecretName | str) -> SecretStr:
        """The value of ``name``; raises SecretNotFoundError or SecretBackendError."""
        ...


def _spec(name: SecretName | str) -> SecretSpec:
    try:
        return CATALOGUE[SecretName(name)]
    except ValueError:
        known = ", ".join(n.value for n in SecretName)
        raise SecretError(str(name), "catalogue", f"unknown secret (known: {known})") from None


class EnvSecretSource:
    """Environment variables: the default, and what the platform injects on Google Cloud.

    ``NAME`` holds the value; ``NAME_FILE`` may instead name a file holding it
    (the convention of container platforms that mount secrets as files, and of
    the IB Gateway image), which keeps the value out of ``/proc/*/environ``.
    """

    backend = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def get(self, name: SecretName | str) -> SecretStr:
        spec = _spec(name)
        var = spec.name.value
        value = self._environ.get(var)
        if value is None and self._environ.get(f"{var}_FILE"):
            path = self._environ[f"{var}_FILE"]
            try:
                with open(path, encoding="utf-8") as handle:
                    value = handle.read().rstrip("\r\n")
            except OSError as exc:
                raise SecretBackendError(
                    var, self.backend, f"cannot read {var}_FILE ({type(exc).__name__})"
                ) from None
        if not value:
            raise SecretNotFoundError(var, self.backend, f"set the environment variable {var}")
        return SecretStr(value)


class _Cache:
    """A small per-process cache so that a warm function does not re-fetch.

    Entries expire after ``ttl`` seconds (monotonic time), so a rotated secret
    is picked up without a redeploy, while a burst of invocations costs one
    request per secret. Values stay wrapped in SecretStr inside the cache.
    """

    def __init__(self, ttl: float, now: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._now = now
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, SecretStr]] = {}

    def get(self, key: str) -> SecretStr | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._now() >= entry[0]:
                return None
            return entry[1]

    def put(self, key: str, value: SecretStr) -> None:
        if self._ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._now() + self._ttl, value)


class GcpSecretSource:
    """Google Secret Manager: ``projects/{project}/secrets/{secret_id}/versions/{version}``.

    The client library authenticates with the runtime's own service account
    (Application Default Credentials), so no key is stored anywhere; Terraform
    grants each service account ``secretAccessor`` on exactly the secrets its
    code reads. ``client`` may be given to point the real client elsewhere
    (a regional endpoint); nothing here replaces it with a fake.
    """

    backend = "gcp"

    def __init__(
        self,
        project: str,
        *,
        version: str = "latest",
        client: Any | None = None,
        timeout: float = 10.0,
        cache_ttl: float = 300.0,
    ) -> None:
        if not project or not _PROJECT_ID.match(project):
            raise SecretBackendError(
                "*",
                self.backend,
                f"invalid Google Cloud project id {project!r} "
                "(set GOOGLE_CLOUD_PROJECT or PUBSUB_PROJECT_ID)",
            )
        if version != "latest" and not version.isdigit():
            raise SecretBackendError(
                "*", self.backend, f"version must be 'latest' or a number, not {version!r}"
            )
        if timeout <= 0:
            raise SecretBackendError("*", self.backend, "timeout must be positive")
        self.project = project
        self.version = version
        self._client = client
        self._timeout = timeout
        self._cache = _Cache(cache_ttl)

    def resource_name(self, name: SecretName | str) -> str:
        """The Secret Manager resource the secret ``name`` is read from."""
        spec = _spec(name)
        if not _SECRET_ID.match(spec.secret_id):  # guards edits of the catalogue
            raise SecretBackendError(spec.name.value, self.backend, "invalid secret id")
        return f"projects/{self.project}/secrets/{spec.secret_id}/versions/{self.version}"

    def _get_client(self) -> Any:
        # Imported lazily: the library pulls in gRPC, which processes that
        # never use Secret Manager (tests, the demo) should not pay for.
        if self._client is None:
            from google.cloud import secretmanager

            self._client = secretmanager.SecretManagerServiceClient()
        return self._client

    def get(self, name: SecretName | str) -> SecretStr:
        resource = self.resource_name(name)
        label = _spec(name).name.value
        cached = self._cache.get(resource)
        if cached is not None:
            return cached
        from google.api_core import exceptions as gexc
        from google.api_core import retry as gretry

        # Transient errors (UNAVAILABLE, 5xx) are retried, but within this
        # source's own deadline, not the library's minute-long default.
        retry = gretry.Retry(
            predicate=gretry.if_transient_error,
            initial=0.25,
            maximum=2.0,
            timeout=self._timeout,
        )
        try:
            response = self._get_client().access_secret_version(
                request={"name": resource}, retry=retry, timeout=self._timeout
            )
        except gexc.NotFound:
            raise SecretNotFoundError(
                label, self.backend, f"{resource} does not exist or has no enabled version"
            ) from None
        except gexc.PermissionDenied:
            raise SecretBackendError(
                label,
                self.backend,
                f"permission denied on {resource}: grant this service account "
                "roles/secretmanager.secretAccessor on the secret",
            ) from None
        except gexc.GoogleAPIError as exc:
            raise SecretBackendError(
                label, self.backend, f"Secret Manager request failed ({type(exc).__name__})"
            ) from None
        data: bytes = response.payload.data
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretBackendError(label, self.backend, "value is not UTF-8 text") from None
        if not value:
            raise SecretNotFoundError(label, self.backend, f"{resource} is empty")
        secret = SecretStr(value)
        self._cache.put(resource, secret)
        return secret


class VaultSecretSource:
    """HashiCorp Vault (or OpenBao) KV version 2 over its HTTP API.

    Each secret is read from ``{addr}/v1/{mount}/data/{prefix}/{secret_id}``
    and its value is the field ``value`` (``bao kv put -mount=secret
    spreadpilot/telegram-bot-token value=...``). One path per secret lets a
    Vault policy grant each process only what it reads, mirroring the
    per-service-account grants on Google Cloud. The token is sent only in the
    ``X-Vault-Token`` header and never appears in errors.
    """

    backend = "vault"
    field = "value"

    def __init__(
        self,
        addr: str,
        token: SecretStr,
        *,
        mount_point: str = "secret",
        path_prefix: str = "spreadpilot",
        namespace: str | None = None,
        timeout: float = 5.0,
        cache_ttl: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not addr or not addr.startswith(("http://", "https://")):
            raise SecretBackendError("*", self.backend, "VAULT_ADDR must be an http(s) URL")
        if not token.get_secret_value():
            raise SecretBackendError("*", self.backend, "VAULT_TOKEN is empty")
        self.mount_point = _vault_path(mount_point, "VAULT_MOUNT_POINT")
        self.path_prefix = _vault_path(path_prefix, "path prefix") if path_prefix else ""
        if timeout <= 0:
            raise SecretBackendError("*", self.backend, "timeout must be positive")
        headers = {"X-Vault-Token": token.get_secret_value()}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        self.addr = addr.rstrip("/")
        self._http = httpx.Client(
            base_url=self.addr, headers=headers, timeout=timeout, transport=transport
        )
        self._cache = _Cache(cache_ttl)

    def path(self, name: SecretName | str) -> str:
        """The API path (under ``/v1/``) the secret ``name`` is read from."""
        spec = _spec(name)
        parts = [self.mount_point, "data"]
        if self.path_prefix:
            parts.append(self.path_prefix)
        parts.append(spec.secret_id)
        return "/".join(parts)

    def get(self, name: SecretName | str) -> SecretStr:
        label = _spec(name).name.value
        path = self.path(name)
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        try:
            response = self._http.get(f"/v1/{path}")
        except httpx.HTTPError as exc:
            raise SecretBackendError(
                label, self.backend, f"cannot reach {self.addr} ({type(exc).__name__})"
            ) from None
        if response.status_code == 404:
            raise SecretNotFoundError(label, self.backend, f"nothing at {path}")
        if response.status_code == 403:
            raise SecretBackendError(
                label, self.backend, f"permission denied on {path} (token or policy)"
            )
        if response.status_code != 200:
            raise SecretBackendError(
                label, self.backend, f"HTTP {response.status_code} reading {path}"
            )
        try:
            body = response.json()
            fields = body["data"]["data"]
        except (ValueError, KeyError, TypeError):
            raise SecretBackendError(
                label, self.backend, f"{path} is not a KV version 2 secret"
            ) from None
        value = fields.get(self.field) if isinstance(fields, dict) else None
        if not isinstance(value, str) or not value:
            raise SecretNotFoundError(
                label, self.backend, f"{path} has no non-empty field {self.field!r}"
            )
        secret = SecretStr(value)
        self._cache.put(path, secret)
        return secret

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()


def _vault_path(value: str, what: str) -> str:
    segments = value.strip("/").split("/")
    if not all(_VAULT_SEGMENT.match(s) and s not in (".", "..") for s in segments):
        raise SecretBackendError("*", "vault", f"invalid {what} {value!r}")
    return "/".join(segments)


def backend_name(settings: Settings) -> BackendName:
    """The configured backend; ``VAULT_ENABLED=true`` (the original bot's switch) means vault."""
    if settings.vault_enabled:
        return "vault"
    return settings.secrets_backend


def secret_source(
    settings: Settings | None = None, *, environ: Mapping[str, str] | None = None
) -> SecretSource:
    """The secret source the configuration asks for.

    ``gcp`` reads the project from ``GOOGLE_CLOUD_PROJECT`` (set on Google
    Cloud) or else ``PUBSUB_PROJECT_ID``; ``vault`` uses ``VAULT_ADDR``,
    ``VAULT_TOKEN``, ``VAULT_MOUNT_POINT``, ``VAULT_PATH_PREFIX`` (default
    ``spreadpilot``) and ``VAULT_NAMESPACE``. All of them are ``Settings``
    fields, so they are validated, documented and overridable like every
    other setting (one configuration model); ``environ`` is only what the
    ``env`` backend reads secrets from.
    """
    if settings is None:
        from spreadpilot.config import get_settings

        settings = get_settings()
    env = environ if environ is not None else os.environ
    backend = backend_name(settings)
    if backend == "env":
        return EnvSecretSource(env)
    if backend == "gcp":
        project = settings.google_cloud_project or settings.pubsub_project_id
        return GcpSecretSource(project)
    if not settings.vault_addr:
        raise SecretBackendError("*", "vault", "VAULT_ADDR is not set")
    if settings.vault_token is None:
        raise SecretBackendError("*", "vault", "VAULT_TOKEN is not set")
    return VaultSecretSource(
        settings.vault_addr,
        settings.vault_token,
        mount_point=settings.vault_mount_point,
        path_prefix=settings.vault_path_prefix,
        namespace=settings.vault_namespace or None,
    )


def get_secret(name: SecretName | str, source: SecretSource | None = None) -> SecretStr:
    """The value of ``name`` from ``source`` (default: the configured one)."""
    return (source or secret_source()).get(name)


def settings_with_secrets(
    settings: Settings,
    *names: SecretName,
    source: SecretSource | None = None,
    optional: Collection[SecretName] = (),
) -> Settings:
    """A copy of ``settings`` whose fields for ``names`` come from the secret source.

    Entry points call this with the secrets they need, so that a process
    configured for Secret Manager or Vault asks only for what it is granted.
    With the ``env`` backend the settings already hold the environment's
    values and are returned unchanged.

    A name in ``optional`` that the source does not hold (SecretNotFoundError)
    leaves its field as configured, for secrets a deployment may do without
    (a sheet read with the service account needs no API key). Every other
    failure raises: a backend that cannot be asked is never read as "no secret".
    """
    if backend_name(settings) == "env" and source is None:
        return settings
    chosen = source or secret_source(settings)
    update: dict[str, object] = {}
    for name in names:
        spec = _spec(name)
        if spec.settings_field is None or spec.settings_field not in type(settings).model_fields:
            continue  # a secret that fills no setting
        try:
            value = chosen.get(spec.name)
        except SecretNotFoundError:
            if spec.name in optional:
                continue
            raise
        current = getattr(settings, spec.settings_field)
        update[spec.settings_field] = (
            value if isinstance(current, SecretStr) or current is None else value.get_secret_value()
        )
    return settings.model_copy(update=update)
