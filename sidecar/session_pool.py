"""One IB session per follower gateway, kept alive and reconciled.

A follower's session has two levels of readiness, on purpose:

* **connected**: the socket is up and the gateway answers. Enough for the kill
  switch, which must work even when every database is down.
* **ready**: connected *and* reconciled since the last (re)connect. Only then
  may a new entry order be sent for that follower: until IB's open orders and
  executions have been matched to our execution records we do not know what is
  already working, and guessing is how a second order gets placed.

Each session reconnects on its own with exponential backoff and jitter, so one
follower's dead gateway never delays another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spreadpilot.adapters.ib_broker import BrokerError, GatewayUnavailable, IBBroker
from spreadpilot.domain.followers import Follower

from sidecar.metrics import SidecarMetrics

log = logging.getLogger(__name__)

ReconcileFn = Callable[["Session"], Awaitable[None]]
EventFn = Callable[["Session", str, dict[str, Any]], None]
BrokerFactory = Callable[[Follower], IBBroker]


@dataclass
class Session:
    """The live state of one follower's gateway session."""

    follower: Follower
    broker: IBBroker
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    connected_event: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected_event: asyncio.Event = field(default_factory=asyncio.Event)
    state: str = "STARTING"
    last_error: str = ""
    last_connected_at: datetime | None = None
    connects: int = 0
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def follower_id(self) -> str:
        return self.follower.id

    @property
    def connected(self) -> bool:
        return self.broker.connected and self.connected_event.is_set()

    @property
    def ready(self) -> bool:
        return self.connected and self.ready_event.is_set()

    def describe(self) -> dict[str, Any]:
        return {
            "follower_id": self.follower_id,
            "state": self.state,
            "connected": self.connected,
            "ready": self.ready,
            "host": self.follower.gateway.host,
            "port": self.follower.gateway.port,
            "client_id": self.follower.gateway.client_id,
            "account": self.follower.account,
            "connects": self.connects,
            "last_error": self.last_error,
            "last_connected_at": self.last_connected_at.isoformat()
            if self.last_connected_at
            else None,
        }


def default_broker_factory(request_timeout: float, connect_timeout: float) -> BrokerFactory:
    def make(f: Follower) -> IBBroker:
        return IBBroker(
            f.gateway.host,
            f.gateway.port,
            f.gateway.client_id,
            f.account,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
        )

    return make


class SessionPool:
    """Owns every follower's session and its reconnect loop."""

    def __init__(
        self,
        *,
        metrics: SidecarMetrics,
        reconcile: ReconcileFn,
        on_event: EventFn,
        now: Callable[[], datetime],
        broker_factory: BrokerFactory,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        health_interval: float = 5.0,
        market_data_follower: str | None = None,
    ) -> None:
        self._metrics = metrics
        self._reconcile = reconcile
        self._on_event = on_event
        self._now = now
        self._factory = broker_factory
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._health_interval = health_interval
        self._market_data_follower = market_data_follower
        self.sessions: dict[str, Session] = {}
        self._closed = False

    # -- membership ---------------------------------------------------------------

    def sync_followers(self, followers: list[Follower]) -> None:
        """Start sessions for new followers, restart changed ones, stop removed ones."""
        wanted = {f.id: f for f in followers}
        for fid in list(self.sessions):
            if fid not in wanted:
                self._stop(self.sessions.pop(fid))
        for fid, f in wanted.items():
            current = self.sessions.get(fid)
            if current is not None:
                same_endpoint = (
                    current.follower.gateway == f.gateway and current.follower.account == f.account
                )
                if same_endpoint:
                    current.follower = f
                    continue
                self._stop(self.sessions.pop(fid))
            session = Session(follower=f, broker=self._factory(f))
            session.broker.add_disconnect_listener(self._disconnect_listener(session))
            self.sessions[fid] = session
            if not self._closed:
                session.task = asyncio.create_task(self._run(session), name=f"session-{fid}")

    def get(self, follower_id: str) -> Session | None:
        return self.sessions.get(follower_id)

    def followers(self) -> list[Follower]:
        return [s.follower for s in self.sessions.values()]

    def market_data_session(self, fallback: Session) -> Session:
        """The designated market-data session when configured and up, else ``fallback``."""
        if self._market_data_follower:
            md = self.sessions.get(self._market_data_follower)
            if md is not None and md.connected:
                return md
        return fallback

    async def wait_ready(self, session: Session, wait_seconds: float) -> bool:
        if session.ready:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.ready_event.wait(), wait_seconds)
        return session.ready

    async def close(self) -> None:
        self._closed = True
        sessions = list(self.sessions.values())
        for s in sessions:
            self._stop(s)
        tasks = [s.task for s in sessions if s.task is not None]
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- health ---------------------------------------------------------------------

    async def health(self, session: Session) -> dict[str, Any]:
        """Round-trip the gateway and check the logged-in account is the expected one."""
        out = session.describe()
        if not session.connected:
            out["healthy"] = False
            return out
        try:
            server_time = await session.broker.current_time()
            accounts = session.broker.managed_accounts()
        except BrokerError as exc:
            out.update(healthy=False, error=str(exc))
            return out
        account_ok = session.follower.account in accounts
        out.update(
            healthy=account_ok and session.ready,
            server_time=server_time.isoformat(),
            account_ok=account_ok,
        )
        return out

    # -- internals --------------------------------------------------------------------

    def _stop(self, session: Session) -> None:
        session.state = "STOPPED"
        if session.task is not None:
            session.task.cancel()
        session.ready_event.clear()
        session.connected_event.clear()
        session.broker.disconnect()
        self._metrics.session_up.labels(session.follower_id).set(0)

    def _disconnect_listener(self, session: Session) -> Callable[[], None]:
        def listener() -> None:
            self._on_disconnect(session)

        return listener

    def _on_disconnect(self, session: Session) -> None:
        was_connected = session.connected_event.is_set()
        session.ready_event.clear()
        session.connected_event.clear()
        session.disconnected_event.set()
        self._metrics.session_up.labels(session.follower_id).set(0)
        session.wake.set()
        if was_connected and session.state != "STOPPED":
            session.state = "DISCONNECTED"
            self._on_event(session, "disconnected", {})

    async def _run(self, session: Session) -> None:
        attempt = 0
        while not self._closed:
            if not session.broker.connected:
                ok = await self._connect_once(session)
                if not ok:
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                attempt = 0
            # Connected: watch the session until it drops, probing it now and then.
            session.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wake.wait(), self._health_interval)
            if session.broker.connected and not session.ready_event.is_set():
                # Reconcile failed earlier (a database down): try again.
                await self._reconcile_and_open(session)
            elif session.broker.connected:
                await self._probe(session)

    async def _probe(self, session: Session) -> None:
        try:
            await session.broker.current_time()
        except GatewayUnavailable as exc:
            session.last_error = str(exc)
            log.warning(
                "gateway probe failed; dropping session",
                extra={"follower_id": session.follower_id, "error": str(exc)},
            )
            session.broker.disconnect()
        except BrokerError as exc:
            session.last_error = str(exc)

    def _backoff(self, attempt: int) -> float:
        base = min(self._backoff_max, self._backoff_initial * (2 ** min(attempt - 1, 16)))
        return float(base * random.uniform(0.5, 1.5))

    async def _connect_once(self, session: Session) -> bool:
        session.state = "CONNECTING"
        try:
            await session.broker.connect()
        except GatewayUnavailable as exc:
            session.state = "DOWN"
            session.last_error = str(exc)
            if session.connects == 0 and not getattr(session, "_down_reported", False):
                session._down_reported = True  # type: ignore[attr-defined]
                self._on_event(session, "unreachable", {"error": str(exc)})
            return False
        accounts = session.broker.managed_accounts()
        if session.follower.account not in accounts:
            # Logged into the wrong account: trading here would move someone
            # else's money. Stay disconnected and say so.
            session.state = "WRONG_ACCOUNT"
            session.last_error = f"gateway manages {accounts}, expected {session.follower.account}"
            self._on_event(session, "wrong_account", {"managed_accounts": accounts})
            session.broker.disconnect()
            return False
        session.connects += 1
        if session.connects > 1:
            self._metrics.reconnects.labels(session.follower_id).inc()
        session.last_connected_at = self._now()
        session.disconnected_event.clear()
        session.connected_event.set()
        self._on_event(session, "connected", {"connects": session.connects})
        await self._reconcile_and_open(session)
        return True

    async def _reconcile_and_open(self, session: Session) -> None:
        session.state = "RECONCILING"
        try:
            await self._reconcile(session)
        except Exception as exc:
            session.state = "RECONCILE_FAILED"
            session.last_error = f"reconcile failed: {exc}"
            log.exception("reconcile failed", extra={"follower_id": session.follower_id})
            return
        if session.broker.connected:
            session.state = "READY"
            session.last_error = ""
            session.ready_event.set()
            self._metrics.session_up.labels(session.follower_id).set(1)
