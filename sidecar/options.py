"""Sidecar-only knobs, read from the environment (``SIDECAR_*``).

The shared ``Settings`` model carries everything several processes need
(MIN_PRICE, SIDECAR_TOKEN, store URLs...). These are the few settings only the
sidecar reads: how it binds, whom it trusts, and how patient it is with
gateways. Defaults suit production; tests shorten the waits.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SidecarOptions(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIDECAR_", case_sensitive=False, extra="ignore", env_ignore_empty=True
    )

    host: str = Field(
        default="127.0.0.1", description="Interface to bind (loopback unless deployed)."
    )
    auth_audience: str | None = Field(
        default=None, description="Audience of accepted Google ID tokens (default: SIDECAR_URL)."
    )
    allowed_service_accounts: str = Field(
        default="",
        description="Comma-separated service-account e-mails whose ID tokens are accepted.",
    )
    token_secret: str | None = Field(
        default=None,
        description="Secret Manager resource of the static token "
        "(projects/P/secrets/S/versions/latest); used when SECRETS_BACKEND=gcp.",
    )
    market_data_follower: str | None = Field(
        default=None, description="Follower whose session supplies quotes for everyone (optional)."
    )
    follower_refresh_seconds: float = Field(default=30.0, gt=0)
    reconnect_initial_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    health_interval_seconds: float = Field(default=5.0, gt=0)
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    ready_timeout_seconds: float = Field(default=3.0, ge=0)
    reconnect_wait_seconds: float = Field(default=30.0, ge=0)
    execution_max_age_seconds: float = Field(default=900.0, gt=0)
    liquidation_fill_wait_seconds: float = Field(default=15.0, gt=0)
    mongo_timeout_ms: int = Field(default=2000, ge=100)

    def service_accounts(self) -> frozenset[str]:
        return frozenset(
            a.strip().lower() for a in self.allowed_service_accounts.split(",") if a.strip()
        )
