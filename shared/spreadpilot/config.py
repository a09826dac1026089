"""The one configuration model (pydantic-settings), read from the environment.

Names are the environment variables users of the original bot already know
(field ``min_price`` <- ``MIN_PRICE``); defaults are SPEC section 8. Secrets are
``SecretStr`` and URLs that may carry passwords are redacted in repr/str, so
logging the settings object (repr, str, or JSON dump) is safe. Empty variables count as unset.
"""

from __future__ import annotations

import json
from datetime import time
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from spreadpilot.domain.alerts import AlertChannel, Severity
from spreadpilot.domain.signals import SignalLimits

AlertRouting = dict[Severity, tuple[AlertChannel, ...]]

DEFAULT_ALERT_ROUTING: AlertRouting = {
    Severity.CRITICAL: (AlertChannel.TELEGRAM, AlertChannel.EMAIL),
    Severity.WARNING: (AlertChannel.TELEGRAM,),
}

# Fields whose values are URLs that may embed credentials.
_URL_FIELDS = frozenset({"redis_url", "mongo_uri", "pnl_database_url", "sidecar_url", "vault_addr"})
_SECRET_QUERY_WORDS = ("pass", "pwd", "token", "secret", "key", "credential")


def redacted_url(url: str) -> str:
    """``url`` with any password (and secret-looking query values) replaced by ``***``.

    Handles multi-host URIs such as ``mongodb://u:p@h1,h2/db``. Text that is
    not a URL is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (k, "***" if any(w in k.lower() for w in _SECRET_QUERY_WORDS) else v)
                for k, v in pairs
            ],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_alert_routing(value: object) -> AlertRouting:
    """ALERT_ROUTING as JSON (``{"CRITICAL": ["telegram", "email"]}``) or compact
    (``CRITICAL=telegram+email,WARNING=telegram``). Severities not named get no
    channel; an empty string routes nothing.
    """
    if isinstance(value, dict):
        raw: dict[Any, Any] = value
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"ALERT_ROUTING is not valid JSON: {exc.msg}") from None
        else:
            raw = {}
            for item in filter(None, (p.strip() for p in text.split(","))):
                severity, sep, channels = item.partition("=")
                if not sep:
                    raise ValueError(
                        f"ALERT_ROUTING item {item!r} must look like SEVERITY=channel+channel"
                    )
                raw[severity.strip()] = [c.strip() for c in channels.split("+") if c.strip()]
    else:
        raise ValueError("ALERT_ROUTING must be JSON or SEVERITY=channel+channel,...")
    routing: AlertRouting = {}
    for severity, listed in raw.items():
        try:
            sev = Severity(str(severity).strip().upper())
        except ValueError:
            names = ", ".join(s.value for s in Severity)
            raise ValueError(f"unknown severity {severity!r} (expected {names})") from None
        names_given: list[object] = [listed] if isinstance(listed, str) else list(listed)
        chosen: list[AlertChannel] = []
        for channel in names_given:
            try:
                chosen.append(AlertChannel(str(channel).strip().lower()))
            except ValueError:
                names = ", ".join(c.value for c in AlertChannel)
                raise ValueError(f"unknown alert channel {channel!r} (expected {names})") from None
        routing[sev] = tuple(dict.fromkeys(chosen))
    return routing


class Settings(BaseSettings):
    """Every setting of every process. Construct with ``get_settings()``."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", env_ignore_empty=True, validate_default=True
    )

    # --- IB gateway -------------------------------------------------------
    ib_gateway_host: str = Field(default="127.0.0.1", description="Default IB Gateway host.")
    ib_gateway_port: int = Field(
        default=4002, ge=1, le=65535, description="Default IB Gateway port (4002 paper, 4001 live)."
    )
    ib_client_id: int = Field(default=1, ge=0, description="Default TWS API client id.")
    ib_trading_mode: Literal["paper", "live"] = Field(
        default="paper", description="paper or live; live trading must be chosen explicitly."
    )

    # --- Execution ----------------------------------------------------------
    min_price: float = Field(
        default=0.70,
        gt=0,
        description="Lowest credit per spread ever asked (MID_TOO_LOW below it).",
    )
    price_increment: float = Field(
        default=0.01, gt=0, description="Credit step between ladder rungs (a multiple of 0.01)."
    )
    max_attempts: int = Field(default=10, ge=1, le=100, description="Ladder rungs at most.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="How long each rung works.")
    max_spread_width: float = Field(
        default=10.0, gt=0, description="Widest spread a signal may ask for (strike points)."
    )
    max_qty_per_leg: int = Field(
        default=50, ge=1, description="Largest qty per leg a signal may ask."
    )
    strike_increment: float = Field(
        default=1.0, gt=0, description="QQQ strike grid signals must use."
    )

    # --- Signals ----------------------------------------------------------
    signal_time: time = Field(
        default=time(9, 27), description="New York time polling starts (HH:MM)."
    )
    signal_window_minutes: int = Field(
        default=30, ge=1, le=390, description="How long after SIGNAL_TIME the sheet is polled."
    )
    polling_interval_seconds: float = Field(
        default=1.0, gt=0, description="Seconds between sheet reads (Sheets allows ~60/min)."
    )
    google_sheet_url: str | None = Field(default=None, description="The signal Google Sheet URL.")
    sheet_csv_path: str | None = Field(
        default=None, description="Read signals from this CSV file instead of Google (demo)."
    )
    google_sheet_worksheet: str | None = Field(
        default=None,
        description="Worksheet (tab) title holding the signals; unset = the sheet's first tab.",
    )
    google_sheets_api_key: SecretStr | None = Field(
        default=None,
        description=(
            "API key for a sheet shared publicly; unset = service-account credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS or the runtime's ADC)."
        ),
    )
    sheets_api_base: str = Field(
        default="https://sheets.googleapis.com",
        description="Sheets API v4 base URL: Google's, or the local stand-in in tests.",
    )
    poll_duration_seconds: float = Field(
        default=55.0,
        gt=0,
        le=540,
        description=(
            "How long one poll_signals invocation keeps polling; it is fired every minute, "
            "so just under 60 s covers the window, and it must end before the function's "
            "timeout (540 s at most)."
        ),
    )

    # --- Risk and P&L -------------------------------------------------------
    position_check_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between time-value checks while the market is open.",
    )
    mtm_interval_seconds: float = Field(
        default=30.0, gt=0, description="Seconds between P&L marks."
    )
    tv_critical: float = Field(
        default=0.10, ge=0, description="TV at or below this is CRITICAL: the spread is liquidated."
    )
    tv_risk: float = Field(default=1.00, ge=0, description="TV at or below this is RISK.")
    tv_status_ttl_seconds: int = Field(
        default=300, ge=1, description="TTL of the per-follower TV status hash in Redis."
    )
    commission_fx_rate: Decimal | None = Field(
        default=None,
        gt=0,
        description="Units of a follower's billing currency per USD; unset = USD.",
    )

    # --- Stores -----------------------------------------------------------
    redis_url: str = Field(
        default="redis://localhost:6379", description="Redis (alerts stream, TV)."
    )
    mongo_uri: str = Field(
        default="mongodb://127.0.0.1:27017", description="MongoDB connection URI."
    )
    mongo_db: str = Field(default="spreadpilot", min_length=1, description="MongoDB database name.")
    pnl_database_url: str = Field(
        default="postgresql://spreadpilot@127.0.0.1:5432/spreadpilot",
        description="PostgreSQL URL of the P&L database.",
    )
    alert_stream_maxlen: int = Field(
        default=10_000, ge=100, description="Approximate cap of the Redis stream `alerts`."
    )

    # --- Messaging ----------------------------------------------------------
    pubsub_project_id: str = Field(default="spreadpilot-local", description="Google Cloud project.")
    pubsub_emulator_host: str | None = Field(
        default=None, description="host:port of the Pub/Sub emulator; unset = real Pub/Sub."
    )

    # --- Sidecar --------------------------------------------------------------
    sidecar_url: str = Field(
        default="http://127.0.0.1:8001", description="Where functions reach it."
    )
    sidecar_port: int = Field(
        default=8001, ge=1, le=65535, description="Port the sidecar listens on."
    )
    sidecar_token: SecretStr | None = Field(
        default=None, description="Static bearer token for the API."
    )
    sidecar_use_id_token: bool = Field(
        default=False,
        description=(
            "Functions authenticate to the sidecar with a Google-signed ID token of their "
            "service account (production) instead of SIDECAR_TOKEN."
        ),
    )
    sidecar_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Interface the sidecar binds (loopback unless deployed behind a firewall).",
    )
    sidecar_auth_audience: str | None = Field(
        default=None,
        description="Audience of the Google ID tokens the sidecar accepts (unset: SIDECAR_URL).",
    )
    sidecar_allowed_service_accounts: str = Field(
        default="",
        description=(
            "Comma-separated service-account e-mails whose Google ID tokens the sidecar "
            "accepts (the functions' account in production); empty = static token only."
        ),
    )
    sidecar_market_data_follower: str | None = Field(
        default=None,
        description="Follower whose gateway session supplies quotes for everyone (optional).",
    )
    sidecar_follower_refresh_seconds: float = Field(
        default=30.0, gt=0, description="How often the sidecar re-reads the followers."
    )
    sidecar_reconnect_initial_seconds: float = Field(
        default=0.5, gt=0, description="First delay before reconnecting a dropped gateway."
    )
    sidecar_reconnect_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest delay between gateway reconnects (the backoff doubles up to it).",
    )
    sidecar_health_interval_seconds: float = Field(
        default=5.0, gt=0, description="Seconds between round trips that prove a session alive."
    )
    sidecar_request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for any gateway request (a hung one holds a follower's lock).",
    )
    sidecar_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait for a gateway connection handshake."
    )
    sidecar_ready_timeout_seconds: float = Field(
        default=3.0,
        ge=0,
        description="How long an execution waits for its session to be ready before failing.",
    )
    sidecar_reconnect_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How long a ladder waits for a dropped gateway before leaving its working "
            "order to reconciliation."
        ),
    )
    sidecar_execution_max_age_seconds: float = Field(
        default=900.0,
        gt=0,
        description=(
            "Clock seconds after which an execution that sent no order is abandoned "
            "instead of resumed (a stale signal must not trade)."
        ),
    )
    sidecar_liquidation_fill_wait_seconds: float = Field(
        default=15.0,
        gt=0,
        description="How long a liquidation or flatten waits for its market order to fill.",
    )
    sidecar_mongo_timeout_ms: int = Field(
        default=2000,
        ge=100,
        description="MongoDB server-selection timeout of the sidecar, in milliseconds.",
    )

    # --- Alerts -------------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        default=None, description="Telegram Bot API token."
    )
    telegram_admin_chat_id: str | None = Field(default=None, description="Admin Telegram chat id.")
    telegram_api_base: str = Field(
        default="https://api.telegram.org",
        description="Telegram Bot API base URL (stand-in locally).",
    )
    sendgrid_api_key: SecretStr | None = Field(default=None, description="SendGrid v3 API key.")
    sendgrid_api_base: str = Field(
        default="https://api.sendgrid.com", description="SendGrid API base URL (stand-in locally)."
    )
    admin_email: str | None = Field(default=None, description="Where e-mailed alerts go.")
    alert_from_email: str = Field(
        default="alerts@spreadpilot.local", description="Sender address of e-mailed alerts."
    )
    alert_max_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Delivery attempts per alert and channel before it is dead-lettered.",
    )
    alert_retry_base_seconds: float = Field(
        default=0.5, ge=0, description="First retry delay of an alert delivery; doubles each time."
    )
    alert_retry_max_seconds: float = Field(
        default=8.0,
        ge=0,
        description="Longest delay between alert delivery retries (caps the doubling).",
    )
    alert_routing: Annotated[AlertRouting, NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_ALERT_ROUTING),
        description=(
            "Severity -> channels, JSON or CRITICAL=telegram+email,WARNING=telegram (the default)."
        ),
    )

    # --- Secrets ------------------------------------------------------------
    secrets_backend: Literal["env", "gcp", "vault"] = Field(
        default="env", description="Where secrets come from: env, gcp (Secret Manager) or vault."
    )
    vault_enabled: bool = Field(default=False, description="Read secrets from HashiCorp Vault.")
    vault_addr: str | None = Field(
        default=None, description="Vault address, e.g. http://vault:8200."
    )
    vault_token: SecretStr | None = Field(default=None, description="Vault token.")
    vault_mount_point: str = Field(default="secret", description="Vault KV mount point.")
    vault_path_prefix: str = Field(
        default="spreadpilot",
        description=(
            "Folder under the Vault KV mount holding SpreadPilot's secrets "
            "(<mount>/data/<prefix>/<secret-id>); one prefix per environment keeps "
            "a staging token from reading production secrets."
        ),
    )
    vault_namespace: str | None = Field(
        default=None,
        description="Vault Enterprise / HCP namespace (X-Vault-Namespace); unset for open source.",
    )
    google_cloud_project: str | None = Field(
        default=None,
        description=(
            "Google Cloud project whose Secret Manager holds the secrets (gcp backend); "
            "set on Google Cloud by the deployment. Unset: PUBSUB_PROJECT_ID's project."
        ),
    )

    @field_validator("alert_routing", mode="before")
    @classmethod
    def _routing(cls, value: object) -> AlertRouting:
        return parse_alert_routing(value)

    @field_validator("signal_time", mode="before")
    @classmethod
    def _clock_time(cls, value: object) -> object:
        # Accept "9:27" as well as "09:27": people type times both ways.
        if isinstance(value, str) and len(value.strip()) == 4 and value.strip()[1] == ":":
            return "0" + value.strip()
        return value

    @field_validator("sheets_api_base")
    @classmethod
    def _http_base(cls, value: str) -> str:
        # A bare host or a typo'd scheme would otherwise surface only as a
        # confusing gspread error at 09:27, inside the signal window.
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"SHEETS_API_BASE must be an http(s) URL, got {value!r}")
        return value.strip().rstrip("/")

    @field_validator("sidecar_allowed_service_accounts")
    @classmethod
    def _service_accounts(cls, value: str) -> str:
        # A typo here would silently lock the functions out (every call 401),
        # or, worse, a stray word could look like an identity: accept e-mails only.
        for account in _split_accounts(value):
            if "@" not in account or any(c.isspace() for c in account):
                raise ValueError(
                    f"SIDECAR_ALLOWED_SERVICE_ACCOUNTS entry {account!r} is not an e-mail address"
                )
        return value

    @field_validator("price_increment")
    @classmethod
    def _whole_ticks(cls, value: float) -> float:
        if Decimal(repr(value)) % Decimal("0.01") != 0:
            raise ValueError(f"PRICE_INCREMENT must be a multiple of 0.01, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.tv_critical > self.tv_risk:
            raise ValueError(
                f"TV_CRITICAL ({self.tv_critical}) must not exceed TV_RISK ({self.tv_risk})"
            )
        if self.alert_retry_max_seconds < self.alert_retry_base_seconds:
            raise ValueError(
                f"ALERT_RETRY_MAX_SECONDS ({self.alert_retry_max_seconds}) must not be below "
                f"ALERT_RETRY_BASE_SECONDS ({self.alert_retry_base_seconds})"
            )
        if self.sidecar_reconnect_max_seconds < self.sidecar_reconnect_initial_seconds:
            raise ValueError(
                f"SIDECAR_RECONNECT_MAX_SECONDS ({self.sidecar_reconnect_max_seconds}) must not "
                f"be below SIDECAR_RECONNECT_INITIAL_SECONDS "
                f"({self.sidecar_reconnect_initial_seconds})"
            )
        if (self.vault_enabled or self.secrets_backend == "vault") and not self.vault_addr:
            raise ValueError("VAULT_ADDR is required when Vault is the secrets backend")
        return self

    @field_serializer(*sorted(_URL_FIELDS), when_used="json")
    def _redact_in_json(self, value: str | None) -> str | None:
        # JSON is what ends up in logs; Python-mode dumps keep the real URL.
        return None if value is None else redacted_url(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in _URL_FIELDS and isinstance(value, str):
                yield name, redacted_url(value)
            else:
                yield name, value

    @property
    def is_live(self) -> bool:
        return self.ib_trading_mode == "live"

    def signal_limits(self) -> SignalLimits:
        """The validation limits signals are checked against."""
        return SignalLimits(
            max_spread_width=self.max_spread_width,
            max_qty_per_leg=self.max_qty_per_leg,
            strike_increment=self.strike_increment,
        )

    def channels_for(self, severity: Severity) -> tuple[AlertChannel, ...]:
        """Channels an alert of ``severity`` goes to (ALERT_ROUTING)."""
        return self.alert_routing.get(severity, ())

    def sidecar_service_accounts(self) -> frozenset[str]:
        """SIDECAR_ALLOWED_SERVICE_ACCOUNTS as a set of lower-case e-mails."""
        return frozenset(a.lower() for a in _split_accounts(self.sidecar_allowed_service_accounts))


def _split_accounts(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
