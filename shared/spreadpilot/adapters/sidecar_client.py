"""HTTP client for the broker sidecar's API (what the functions call).

Every route but /health needs ``Authorization: Bearer <token>``: a static token
(SIDECAR_TOKEN, from Secret Manager or the environment) or, in production, a
Google-signed ID token for the functions' service account with the sidecar's
URL as audience. The token is fetched per request through a provider so ID
tokens refresh themselves; it never appears in errors or logs.

Failures are classified once, here, because every caller needs the same
answer: network errors, 408, 429 and 5xx are *transient* (retry later); any
other 4xx is a *permanent* refusal of that request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

log = logging.getLogger(__name__)

TokenProvider = Callable[[], str | None]


class SidecarUnavailable(Exception):
    """The sidecar could not be reached or answered a transient error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SidecarRefused(Exception):
    """The sidecar refused the request for a reason a retry will not change."""

    def __init__(self, message: str, status: int, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class LegView:
    """One leg of an open spread with its quote, as ``GET /positions`` reports it."""

    con_id: int
    right: str  # "P" or "C"
    strike: float
    expiry: date | None
    qty: int
    mid: float | None


@dataclass(frozen=True)
class SpreadPosition:
    spread_id: str
    right: str
    expiry: date | None
    qty: int
    long: LegView
    short: LegView
    pending_liquidation: bool


@dataclass(frozen=True)
class OrphanPosition:
    """A position that is not half of a spread (assignment or legging)."""

    kind: str  # SHORT_LEG_MISSING, STOCK_POSITION, NAKED_SHORT
    con_id: int | str
    sec_type: str
    right: str | None
    strike: float | None
    expiry: date | None
    qty: int


@dataclass(frozen=True)
class FollowerPositions:
    """One follower's open positions with marks; ``error`` when its gateway is down."""

    follower_id: str
    underlying_mid: float | None
    spreads: tuple[SpreadPosition, ...] = ()
    orphans: tuple[OrphanPosition, ...] = ()
    error: str | None = None


def _expiry(text: Any) -> date | None:
    raw = str(text or "").replace("-", "")
    if len(raw) != 8 or not raw.isdigit():
        return None
    return date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))


def _leg(raw: Mapping[str, Any]) -> LegView:
    mid = raw.get("mid")
    return LegView(
        con_id=int(raw["con_id"]),
        right=str(raw["right"]),
        strike=float(raw["strike"]),
        expiry=_expiry(raw.get("expiry")),
        qty=int(raw["qty"]),
        mid=float(mid) if mid is not None else None,
    )


def parse_positions(raw: Mapping[str, Any]) -> FollowerPositions:
    """One follower's entry of the ``GET /positions`` body."""
    follower_id = str(raw["follower_id"])
    if raw.get("error"):
        return FollowerPositions(follower_id, None, error=str(raw["error"]))
    underlying = raw.get("underlying") or {}
    und_mid = underlying.get("mid") if isinstance(underlying, Mapping) else None
    spreads = tuple(
        SpreadPosition(
            spread_id=str(s["spread_id"]),
            right=str(s["right"]),
            expiry=_expiry(s.get("expiry")),
            qty=int(s["qty"]),
            long=_leg(s["long"]),
            short=_leg(s["short"]),
            pending_liquidation=bool(s.get("pending_liquidation", False)),
        )
        for s in raw.get("spreads") or []
    )
    orphans = tuple(
        OrphanPosition(
            kind=str(o["kind"]),
            con_id=o.get("con_id", ""),
            sec_type=str(o.get("sec_type", "")),
            right=o.get("right"),
            strike=float(o["strike"]) if o.get("strike") is not None else None,
            expiry=_expiry(o.get("expiry")),
            qty=int(o.get("qty", 0)),
        )
        for o in raw.get("orphans") or []
    )
    return FollowerPositions(
        follower_id, float(und_mid) if und_mid is not None else None, spreads, orphans
    )


def is_transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


@dataclass(frozen=True)
class SidecarReply:
    """A successful (2xx) answer."""

    status: int
    body: Any


def static_token(token: str | None) -> TokenProvider:
    """A provider for a fixed bearer token (None = no Authorization header)."""
    return lambda: token


def google_id_token(audience: str) -> TokenProvider:
    """A provider of Google-signed ID tokens for ``audience`` (the sidecar URL).

    Uses the runtime's service account (metadata server) or
    GOOGLE_APPLICATION_CREDENTIALS; google-auth caches nothing here, so cache
    for the token's lifetime to avoid a metadata round trip per call.
    """
    import time

    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    cached: dict[str, Any] = {"token": None, "expires": 0.0}

    def provide() -> str | None:
        if cached["token"] is None or time.time() > cached["expires"]:
            cached["token"] = id_token.fetch_id_token(Request(), audience)  # type: ignore[no-untyped-call]
            cached["expires"] = time.time() + 45 * 60  # tokens live 60 minutes
        token = cached["token"]
        return str(token) if token is not None else None

    return provide


class SidecarClient:
    """One sidecar (one shard of followers)."""

    def __init__(
        self,
        base_url: str,
        token: TokenProvider | str | None = None,
        *,
        timeout: float = 15.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token: TokenProvider = token if callable(token) else static_token(token)
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    # -- routes --------------------------------------------------------------
    def trade_signal(self, body: Mapping[str, Any]) -> SidecarReply:
        """``POST /trade/signal`` (202 with execution ids; idempotent per signal+follower)."""
        return self._call("POST", "/trade/signal", json=dict(body))

    def positions(self, follower_id: str | None = None) -> Any:
        """``GET /positions[/{follower_id}]``: positions with marks and TV (raw JSON)."""
        path = "/positions" if follower_id is None else f"/positions/{follower_id}"
        return self._call("GET", path).body

    def all_positions(self) -> list[FollowerPositions]:
        """Every follower this sidecar serves, parsed."""
        body = self.positions()
        entries = body.get("followers", []) if isinstance(body, Mapping) else []
        return [parse_positions(entry) for entry in entries]

    def liquidate(self, body: Mapping[str, Any]) -> SidecarReply:
        """``POST /liquidate``: close one spread as one combo market order."""
        return self._call("POST", "/liquidate", json=dict(body))

    def flatten(self, body: Mapping[str, Any]) -> SidecarReply:
        """``POST /flatten``: close one unpaired position (assignment stock, orphan leg)."""
        return self._call("POST", "/flatten", json=dict(body))

    def status(self) -> Any:
        return self._call("GET", "/status").body

    def health(self) -> Any:
        return self._call("GET", "/health").body

    # -- plumbing --------------------------------------------------------------
    def _call(self, method: str, path: str, json: Any = None) -> SidecarReply:
        headers: dict[str, str] = {}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        where = f"{method} {self.base_url}{path}"
        try:
            response = self._http.request(method, self.base_url + path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise SidecarUnavailable(f"{where}: {type(exc).__name__}") from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text[:500]
        status = response.status_code
        if 200 <= status < 300:
            return SidecarReply(status, body)
        detail = _detail(body)
        if is_transient(status):
            raise SidecarUnavailable(f"{where}: {status} {detail}", status)
        raise SidecarRefused(f"{where}: {status} {detail}", status, body)


def _detail(body: Any) -> str:
    if isinstance(body, Mapping):
        return str(body.get("detail") or body.get("error") or body)[:300]
    return str(body or "")[:300]
