"""Followers, their sizing, and the trading mode (SPEC sections 1, 3 and 5).

A follower record decides how much is traded on someone's money, so it is
validated strictly when built, with messages that name the field. The IBAN is
personal data: it never appears in repr or logs (``masked_iban`` shows enough
to recognise it).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_IBAN_PATTERN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", re.ASCII)


class FollowerState(StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    MANUAL_INTERVENTION = "MANUAL_INTERVENTION"
    HALTED = "HALTED"


class TradingMode(StrEnum):
    """Kill-switch mode: ``halt`` = no orders at all, ``reduce_only`` = closing only."""

    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"

    def allows_opening(self) -> bool:
        return self is TradingMode.ACTIVE

    def allows_closing(self) -> bool:
        return self is not TradingMode.HALTED


class GatewayEndpoint(BaseModel):
    """Where this follower's own IB Gateway listens (one IBKR username each)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1, description="Gateway host name or IP")
    port: int = Field(ge=1, le=65535, description="TWS API port (4002 paper, 4001 live)")
    client_id: int = Field(ge=0, le=2**31 - 1, description="TWS API client id")


class Follower(BaseModel):
    """One IBKR account copying the strategy, as stored in MongoDB ``followers``.

    ``id`` is stored as ``_id``: build with ``Follower.model_validate(doc)`` and
    store with ``model_dump(by_alias=True)``. Unknown document fields are
    ignored so that older code can read newer records.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id", pattern=SLUG_PATTERN, description="slug, e.g. follower123")
    name: str = Field(min_length=1)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    telegram_chat_id: str | None = None
    iban: str | None = Field(default=None, repr=False)
    enabled: bool = True
    state: FollowerState = FollowerState.ACTIVE
    gateway: GatewayEndpoint
    account: str = Field(pattern=r"^[A-Z]{1,4}[0-9]{3,12}$", description="e.g. DU1234567")
    sidecar_url: str | None = Field(
        default=None, description="the sidecar serving this follower's shard (None: default)"
    )
    qty_multiplier: float = Field(default=1.0, gt=0, le=100)
    max_qty_per_leg: int = Field(default=10, ge=1, le=10_000)
    max_open_spreads: int = Field(default=1, ge=0, le=100)
    min_credit: float | None = Field(default=None, gt=0, description="overrides MIN_PRICE")
    commission_pct: float = Field(default=20.0, ge=0, le=100)
    commission_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _chat_id_text(cls, value: Any) -> Any:
        # Telegram chat ids are integers in the Bot API; keep one type here.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("iban")
    @classmethod
    def _valid_iban(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = "".join(value.split()).upper()
        if not _IBAN_PATTERN.fullmatch(compact):
            raise ValueError("IBAN must be 2 letters, 2 check digits and 11-30 letters/digits")
        rearranged = compact[4:] + compact[:4]
        digits = "".join(str(int(ch, 36)) for ch in rearranged)
        if int(digits) % 97 != 1:
            raise ValueError("IBAN check digits do not match (mod-97)")
        return compact

    @field_validator("qty_multiplier", "min_credit")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def masked_iban(self) -> str | None:
        if self.iban is None:
            return None
        return f"{self.iban[:4]}{'*' * (len(self.iban) - 8)}{self.iban[-4:]}"

    def __repr_args__(self) -> Any:
        yield from super().__repr_args__()
        yield "iban", self.masked_iban

    @property
    def accepts_new_entries(self) -> bool:
        """Opening trades need the follower enabled and ACTIVE."""
        return self.enabled and self.state is FollowerState.ACTIVE


def size_order(qty_per_leg: int, follower: Follower) -> int:
    """Units to trade: min(floor(qty_per_leg * qty_multiplier), max_qty_per_leg).

    Decimal keeps 100 x 0.29 at 29 (float says 28.999999999999996 and floors to 28). 0 means
    skip (the caller raises the INFO alert).
    """
    if qty_per_leg < 0:
        raise ValueError(f"qty_per_leg must not be negative, got {qty_per_leg}")
    scaled = (Decimal(qty_per_leg) * Decimal(repr(follower.qty_multiplier))).to_integral_value(
        rounding=ROUND_FLOOR
    )
    return min(int(scaled), follower.max_qty_per_leg)
