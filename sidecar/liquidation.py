"""Liquidation and the kill switch (SPEC sections 4 and 5).

Both close spreads the same way: ONE combo market order per spread, SELLing the
BUY-long/SELL-short combo, so the long hedge and the short leave together.
Closing leg by leg can leave a naked short for the seconds in between.

The kill switch needs only the gateways. Trading modes live in memory and are
persisted best-effort in the background; alerts go through the publisher,
which buffers when Redis or Pub/Sub are down. Nothing on this path waits for
MongoDB, PostgreSQL or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ib_async import Trade
from spreadpilot.adapters.ib_broker import (
    BrokerError,
    GatewayUnavailable,
    LegQuote,
    OptionContract,
    OrderView,
)
from spreadpilot.clock import NEW_YORK
from spreadpilot.domain.alerts import Alert, AlertType, Severity
from spreadpilot.domain.followers import TradingMode
from spreadpilot.domain.spreads import Right, closing_action, leg_mid
from spreadpilot.domain.timevalue import (
    FindingKind,
    OrphanFinding,
    PositionSpread,
    group_spreads,
    intrinsic,
    spread_status,
    time_value,
)

from sidecar.executor import AlertSink, to_domain_positions
from sidecar.metrics import SidecarMetrics
from sidecar.session_pool import Session, SessionPool
from sidecar.store import ModeStore

log = logging.getLogger(__name__)

_RESTRICTIVENESS = {TradingMode.ACTIVE: 0, TradingMode.REDUCE_ONLY: 1, TradingMode.HALTED: 2}


class KillSwitch:
    """Trading modes: one global, one per follower; the stricter one applies."""

    def __init__(self, store_factory: Callable[[], ModeStore | None]) -> None:
        self.global_mode = TradingMode.ACTIVE
        self.follower_modes: dict[str, TradingMode] = {}
        self.reasons: dict[str, str] = {}
        self._store_factory = store_factory
        self._persist_task: asyncio.Task[None] | None = None
        self.persist_error: str | None = None

    def mode_for(self, follower_id: str) -> TradingMode:
        own = self.follower_modes.get(follower_id, TradingMode.ACTIVE)
        return max(own, self.global_mode, key=lambda m: _RESTRICTIVENESS[m])

    def set(self, mode: TradingMode, follower_id: str | None, reason: str) -> None:
        if follower_id is None:
            self.global_mode = mode
            self.reasons["*"] = reason
            if mode is TradingMode.ACTIVE:
                self.follower_modes.clear()
        else:
            self.follower_modes[follower_id] = mode
            self.reasons[follower_id] = reason
        self._persist()

    def snapshot(self) -> dict[str, Any]:
        return {
            "global": self.global_mode.value,
            "followers": {k: v.value for k, v in sorted(self.follower_modes.items())},
            "reasons": dict(self.reasons),
            "persist_error": self.persist_error,
        }

    async def load(self) -> None:
        """Restore persisted modes at start-up (a halt must survive a restart)."""
        store = self._store_factory()
        if store is None:
            return
        try:
            doc = await asyncio.wait_for(store.load(), 5.0)
        except Exception as exc:
            self.persist_error = f"load: {type(exc).__name__}"
            log.error("kill-switch modes not loaded", extra={"error": type(exc).__name__})
            return
        if not doc:
            return
        with contextlib.suppress(ValueError, KeyError):
            self.global_mode = TradingMode(doc.get("global", "ACTIVE"))
            self.follower_modes = {
                k: TradingMode(v) for k, v in (doc.get("followers") or {}).items()
            }
            self.reasons = dict(doc.get("reasons") or {})

    def _persist(self) -> None:
        store = self._store_factory()
        if store is None:
            return
        state = {
            "global": self.global_mode.value,
            "followers": {k: v.value for k, v in self.follower_modes.items()},
            "reasons": dict(self.reasons),
        }

        async def save() -> None:
            try:
                await asyncio.wait_for(store.save(state), 10.0)
                self.persist_error = None
            except Exception as exc:
                self.persist_error = f"save: {type(exc).__name__}"
                log.warning("kill-switch modes not persisted", extra={"error": self.persist_error})

        with contextlib.suppress(RuntimeError):
            self._persist_task = asyncio.get_running_loop().create_task(save())


@dataclass
class LegMark:
    con_id: int
    right: str
    strike: float
    expiry: str
    qty: int
    bid: float | None
    ask: float | None
    mid: float | None
    intrinsic: float | None
    tv: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SpreadView:
    spread_id: str
    right: str
    expiry: str
    strike_long: float
    strike_short: float
    qty: int
    long: LegMark
    short: LegMark
    status: str | None
    tv: float | None
    mark_credit: float | None = None
    pending_liquidation: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("long", "short")}
        out["long"] = self.long.as_dict()
        out["short"] = self.short.as_dict()
        return out


@dataclass
class FollowerPositions:
    follower_id: str
    underlying: dict[str, float | None]
    spreads: list[SpreadView] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    as_of: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "follower_id": self.follower_id,
            "underlying": self.underlying,
            "spreads": [s.as_dict() for s in self.spreads],
            "orphans": self.orphans,
            "as_of": self.as_of,
        }


def spread_id_of(right: str, expiry: str, strike_long: float, strike_short: float) -> str:
    """Stable, readable id of a spread: ``P-20250117-440-445`` (right, expiry, long, short)."""
    return f"{right}-{expiry}-{_k(strike_long)}-{_k(strike_short)}"


def _k(strike: float) -> str:
    return f"{strike:g}"


def _expiry_text(d: date | None) -> str:
    return d.strftime("%Y%m%d") if d else ""


def _legs(spread: SpreadView) -> frozenset[int]:
    return frozenset({spread.long.con_id, spread.short.con_id})


def _finite(x: float) -> bool:
    return isinstance(x, float | int) and math.isfinite(x)


@dataclass
class LiquidationResult:
    follower_id: str
    spread_id: str
    qty: int
    status: str
    order_id: int | None = None
    order_ref: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FlattenResult:
    """The outcome of closing one unpaired position (``POST /flatten``)."""

    follower_id: str
    kind: str
    con_id: int
    qty: int
    status: str  # FILLED, WORKING, CANCELLED..., NOT_FOUND, REFUSED, FAILED
    action: str | None = None
    order_id: int | None = None
    order_ref: str | None = None
    filled: float = 0.0
    avg_price: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: What ``flatten`` may close: an assignment's stock or orphan long, or a naked short.
FLATTEN_KINDS = frozenset(
    {FindingKind.STOCK_POSITION, FindingKind.SHORT_LEG_MISSING, FindingKind.NAKED_SHORT}
)
_REF_UNSAFE = re.compile(r"[^a-z0-9]+")


def flatten_order_ref(follower_id: str, con_id: int, trading_day: date) -> str:
    """``flat-<follower>-<conId>-<YYYYMMDD>``: the same for every retry of one day.

    Deterministic so that a retried request (a timed-out call, the next
    monitor run) finds the order already working instead of sending another.
    """
    readable = _REF_UNSAFE.sub("", follower_id.lower())[:12] or "f"
    return f"flat-{readable}-{int(con_id)}-{trading_day.strftime('%Y%m%d')}"


class Liquidator:
    """Positions with marks, and closing spreads with combo market orders."""

    def __init__(
        self,
        *,
        pool: SessionPool,
        killswitch: KillSwitch,
        alerts: AlertSink,
        metrics: SidecarMetrics,
        now: Callable[[], datetime],
        tv_critical: float,
        tv_risk: float,
        fill_wait: float = 15.0,
    ) -> None:
        self.pool = pool
        self.killswitch = killswitch
        self.alerts = alerts
        self.metrics = metrics
        self.now = now
        self.tv_critical = tv_critical
        self.tv_risk = tv_risk
        self.fill_wait = fill_wait
        self._locks: dict[str, asyncio.Lock] = {}
        self._seq = 0

    # -- positions ------------------------------------------------------------------

    async def positions(self, session: Session) -> FollowerPositions:
        broker = session.broker
        raw = await broker.positions()
        spreads, orphans = group_spreads(to_domain_positions(raw))
        md = self.pool.market_data_session(session)
        try:
            und = await md.broker.quote_underlying("QQQ")
        except BrokerError as exc:
            # Marks without TV are still enough to close: never block a close on a quote.
            log.warning("underlying quote failed", extra={"error": str(exc)})
            und = LegQuote(math.nan, math.nan)
        s_mid = und.mid if und.valid else math.nan
        contracts: dict[int, OptionContract] = {}
        for p in raw:
            if p.sec_type == "OPT":
                contracts[p.con_id] = OptionContract(
                    con_id=p.con_id,
                    symbol=p.symbol,
                    expiry=p.expiry,
                    strike=p.strike,
                    right=p.right,
                )
        quotes: dict[int, LegQuote] = {}
        if contracts:
            ordered = list(contracts.values())
            try:
                for c, q in zip(ordered, await md.broker.quote(*ordered), strict=True):
                    quotes[c.con_id] = q
            except BrokerError as exc:
                log.warning("position quotes failed", extra={"error": str(exc)})
        out = FollowerPositions(
            follower_id=session.follower_id,
            underlying={
                "symbol": "QQQ",  # type: ignore[dict-item]
                "bid": und.bid if _finite(und.bid) else None,
                "ask": und.ask if _finite(und.ask) else None,
                "mid": s_mid if _finite(s_mid) else None,
            },
            as_of=self.now().isoformat(),
        )
        working = self._working_liquidations(session)
        for sp in spreads:
            view = self._spread_view(sp, quotes, s_mid)
            view.pending_liquidation = _legs(view) in working
            out.spreads.append(view)
        out.orphans = [self._orphan_view(o) for o in orphans]
        return out

    def _leg_mark(self, pos: Any, quotes: dict[int, LegQuote], s_mid: float) -> LegMark:
        q = quotes.get(int(pos.key))
        bid = q.bid if q and _finite(q.bid) else None
        ask = q.ask if q and _finite(q.ask) else None
        mid: float | None = None
        intr: float | None = None
        tv: float | None = None
        if bid is not None and ask is not None:
            with contextlib.suppress(ValueError):
                mid = leg_mid(bid, ask)
        if _finite(s_mid):
            intr = intrinsic(pos.right, pos.strike, s_mid)
            if mid is not None:
                tv = round(time_value(mid, pos.right, pos.strike, s_mid), 4)
        return LegMark(
            con_id=int(pos.key),
            right=pos.right.value,
            strike=pos.strike,
            expiry=_expiry_text(pos.expiry),
            qty=pos.qty,
            bid=bid,
            ask=ask,
            mid=mid,
            intrinsic=intr,
            tv=tv,
        )

    def _spread_view(
        self, sp: PositionSpread, quotes: dict[int, LegQuote], s_mid: float
    ) -> SpreadView:
        long_m = self._leg_mark(sp.long, quotes, s_mid)
        short_m = self._leg_mark(sp.short, quotes, s_mid)
        status = None
        if short_m.tv is not None:
            status = spread_status(short_m.tv, self.tv_critical, self.tv_risk).value
        mark = None
        if long_m.mid is not None and short_m.mid is not None:
            mark = round(short_m.mid - long_m.mid, 4)
        assert sp.long.strike is not None and sp.short.strike is not None
        return SpreadView(
            spread_id=spread_id_of(long_m.right, long_m.expiry, sp.long.strike, sp.short.strike),
            right=long_m.right,
            expiry=long_m.expiry,
            strike_long=sp.long.strike,
            strike_short=sp.short.strike,
            qty=sp.qty,
            long=long_m,
            short=short_m,
            status=status,
            tv=short_m.tv,
            mark_credit=mark,
        )

    @staticmethod
    def _orphan_view(o: OrphanFinding) -> dict[str, Any]:
        p = o.position
        return {
            "kind": o.kind.value,
            "alert_type": o.alert_type.value,
            "con_id": int(p.key) if p.key.isdigit() else p.key,
            "sec_type": p.sec_type,
            "right": p.right.value if p.right else None,
            "strike": p.strike,
            "expiry": _expiry_text(p.expiry),
            "qty": p.qty,
        }

    # -- closing ----------------------------------------------------------------------

    async def liquidate(
        self, session: Session, spread_id: str, qty: int | None, reason: str
    ) -> LiquidationResult:
        """Close one spread (all of it unless ``qty``) with one combo market order."""
        lock = self._locks.setdefault(session.follower_id, asyncio.Lock())
        async with lock:
            mode = self.killswitch.mode_for(session.follower_id)
            if not mode.allows_closing():
                return LiquidationResult(
                    session.follower_id, spread_id, 0, "REFUSED", error=f"mode {mode.value}"
                )
            current = await self.positions(session)
            match = next((s for s in current.spreads if s.spread_id == spread_id), None)
            if match is None:
                return LiquidationResult(session.follower_id, spread_id, 0, "NOT_FOUND")
            return await self._close(session, match, qty or match.qty, reason)

    async def close_all(self, session: Session, reason: str) -> list[LiquidationResult]:
        """Close every spread of one follower (the kill switch)."""
        lock = self._locks.setdefault(session.follower_id, asyncio.Lock())
        async with lock:
            mode = self.killswitch.mode_for(session.follower_id)
            if not mode.allows_closing():
                return [
                    LiquidationResult(
                        session.follower_id, "*", 0, "REFUSED", error=f"mode {mode.value}"
                    )
                ]
            current = await self.positions(session)
            results = await asyncio.gather(
                *(self._close(session, s, s.qty, reason) for s in current.spreads)
            )
            if current.orphans:
                self._alert(
                    AlertType.LEGGED_POSITION,
                    f"{len(current.orphans)} unpaired position(s) left for a person to close",
                    {"orphans": current.orphans, "reason": reason},
                    session.follower_id,
                )
            return list(results)

    async def _close(
        self, session: Session, spread: SpreadView, qty: int, reason: str
    ) -> LiquidationResult:
        broker = session.broker
        existing = self._working_liquidations(session).get(_legs(spread))
        if existing is not None:
            # One close in flight per spread: a retry or a second caller joins it.
            return await self._await_fill(session, spread, existing, qty, reason)
        bag = broker.bag(
            [
                (self._contract(spread.long), "BUY"),
                (self._contract(spread.short), "SELL"),
            ]
        )
        self._seq += 1
        digest = hashlib.sha256(
            f"{session.follower_id}|{spread.spread_id}|{self.now().isoformat()}|{self._seq}".encode()
        ).hexdigest()[:12]
        order_ref = f"liq-{spread.spread_id[:14]}-{digest}"
        try:
            order_id = broker.next_order_id()
            order = broker.market_order(order_id, closing_action().value, qty, order_ref)
            trade = broker.place(bag, order)
        except BrokerError as exc:
            result = LiquidationResult(
                session.follower_id, spread.spread_id, qty, "FAILED", error=exc.text
            )
            self._alert(
                AlertType.GATEWAY_UNREACHABLE,
                f"liquidation of {spread.spread_id} not sent: {exc.text}",
                {"spread_id": spread.spread_id, "qty": qty, "reason": reason, "error": exc.text},
                session.follower_id,
            )
            return result
        self.metrics.orders_sent.labels(session.follower_id, "liquidation").inc()
        log.warning(
            "liquidation sent",
            extra={
                "follower_id": session.follower_id,
                "spread_id": spread.spread_id,
                "qty": qty,
                "order_id": order_id,
                "order_ref": order_ref,
                "reason": reason,
            },
        )
        return await self._await_fill(session, spread, trade, qty, reason)

    async def _await_fill(
        self, session: Session, spread: SpreadView, trade: Trade, qty: int, reason: str
    ) -> LiquidationResult:
        view = await self._wait_done(session, trade)
        filled, status = _fill_outcome(view)
        result = LiquidationResult(
            follower_id=session.follower_id,
            spread_id=spread.spread_id,
            qty=qty,
            status=status,
            order_id=view.order_id,
            order_ref=view.order_ref,
            filled=view.filled,
            avg_price=view.avg_fill_price or None,
            error=view.error_text or None,
        )
        kind = AlertType.TV_LIQUIDATED if reason.upper().startswith("TV") else AlertType.KILL_SWITCH
        params = {**result.as_dict(), "reason": reason, "tv": spread.tv, "status_tv": spread.status}
        if filled:
            self._alert(
                kind,
                f"closed {spread.spread_id} x{qty} at {view.avg_fill_price}",
                params,
                session.follower_id,
                alert_id=f"{view.order_ref}:{kind.value}",
            )
        else:
            self._alert(
                kind,
                f"liquidation of {spread.spread_id} not filled ({status}); retry next cycle",
                params,
                session.follower_id,
                severity=Severity.CRITICAL,
                alert_id=f"{view.order_ref}:{kind.value}:unfilled",
            )
        return result

    # -- unpaired positions --------------------------------------------------------------

    async def flatten(
        self, session: Session, kind: str, con_id: int, qty: int | None, reason: str
    ) -> FlattenResult:
        """Close one unpaired position (SPEC 4 "Assignment") with ONE market order.

        The position is re-read from IB and must still be the unpaired
        ``kind`` at ``con_id`` (NOT_FOUND otherwise). The order only ever
        *reduces* it: SELL long shares or a lone long option, BUY back short
        shares or a naked short option, for at most the unpaired quantity, so
        a leg that is half of a spread is never touched and nothing is opened.
        The orderRef is fixed per (follower, contract, trading day): a retry
        joins the order still working; a second flatten of a contract whose
        flatten already filled today is refused (IB still reporting the
        position then means our view and IB's differ, and a second order could
        open the opposite position), for a person to check.
        Runs under the follower's liquidation lock; allowed in reduce-only,
        refused when halted.
        """
        lock = self._locks.setdefault(session.follower_id, asyncio.Lock())
        fid = session.follower_id
        async with lock:
            mode = self.killswitch.mode_for(fid)
            if not mode.allows_closing():
                return FlattenResult(fid, kind, con_id, 0, "REFUSED", error=f"mode {mode.value}")
            broker = session.broker
            day = self.now().astimezone(NEW_YORK).date()
            order_ref = flatten_order_ref(fid, con_id, day)
            working = next((t for t in broker.open_trades() if t.order.orderRef == order_ref), None)
            if working is not None:
                return await self._await_flatten(session, kind, con_id, working, reason)
            raw = await broker.positions()
            _, orphans = group_spreads(to_domain_positions(raw))
            match = next(
                (
                    o
                    for o in orphans
                    if o.kind.value == kind
                    and o.kind in FLATTEN_KINDS
                    and o.position.key == str(con_id)
                ),
                None,
            )
            if match is None:
                return FlattenResult(fid, kind, con_id, 0, "NOT_FOUND")
            unpaired = abs(match.position.qty)
            size = min(qty or unpaired, unpaired)
            action = "SELL" if match.position.qty > 0 else "BUY"
            done_before = [t for t in broker.trades_by_ref(order_ref) if broker.view(t).filled > 0]
            if done_before:
                error = (
                    f"{order_ref} already filled today, yet IB still reports {match.position.qty} "
                    f"of conId {con_id}: not sending another order, check the account"
                )
                self._alert(
                    match.alert_type,
                    f"flatten of {kind} {con_id} refused: {error}",
                    {"kind": kind, "con_id": con_id, "qty": match.position.qty, "reason": reason},
                    fid,
                    severity=Severity.CRITICAL,
                    alert_id=f"{order_ref}:refused",
                )
                return FlattenResult(
                    fid, kind, con_id, size, "REFUSED", action, order_ref=order_ref, error=error
                )
            try:
                contract = await broker.position_contract(con_id)
                order_id = broker.next_order_id()
                trade = broker.place(
                    contract, broker.market_order(order_id, action, size, order_ref)
                )
            except BrokerError as exc:
                self._alert(
                    AlertType.GATEWAY_UNREACHABLE,
                    f"flatten of {kind} {con_id} not sent: {exc.text}",
                    {
                        "kind": kind,
                        "con_id": con_id,
                        "qty": size,
                        "reason": reason,
                        "error": exc.text,
                    },
                    fid,
                )
                return FlattenResult(
                    fid, kind, con_id, size, "FAILED", action, order_ref=order_ref, error=exc.text
                )
            self.metrics.orders_sent.labels(fid, "flatten").inc()
            log.warning(
                "flatten sent",
                extra={
                    "follower_id": fid,
                    "kind": kind,
                    "con_id": con_id,
                    "action": action,
                    "qty": size,
                    "order_id": order_id,
                    "order_ref": order_ref,
                    "reason": reason,
                },
            )
            return await self._await_flatten(session, kind, con_id, trade, reason)

    async def _await_flatten(
        self, session: Session, kind: str, con_id: int, trade: Trade, reason: str
    ) -> FlattenResult:
        view = await self._wait_done(session, trade)
        filled, status = _fill_outcome(view)
        result = FlattenResult(
            follower_id=session.follower_id,
            kind=kind,
            con_id=con_id,
            qty=int(view.total_quantity),
            status=status,
            action=trade.order.action,
            order_id=view.order_id,
            order_ref=view.order_ref,
            filled=view.filled,
            avg_price=view.avg_fill_price or None,
            error=view.error_text or None,
        )
        naked = kind == FindingKind.NAKED_SHORT.value
        params = {**result.as_dict(), "reason": reason}
        if filled:
            self._alert(
                AlertType.LEGGED_POSITION if naked else AlertType.ASSIGNMENT_RESOLVED,
                f"flattened {kind} {con_id}: {result.action} {result.qty} at {result.avg_price}",
                params,
                session.follower_id,
                severity=Severity.WARNING if naked else None,
                # tv_monitor raises ASSIGNMENT_RESOLVED with this id too: one reaches people.
                alert_id=f"{view.order_ref}:"
                + (AlertType.LEGGED_POSITION if naked else AlertType.ASSIGNMENT_RESOLVED).value,
            )
        else:
            self._alert(
                AlertType.LEGGED_POSITION if naked else AlertType.ASSIGNMENT_DETECTED,
                f"flatten of {kind} {con_id} not filled ({status}); retry next cycle",
                params,
                session.follower_id,
                severity=Severity.CRITICAL,
                alert_id=f"{view.order_ref}:unfilled:{status}",
            )
        return result

    async def _wait_done(self, session: Session, trade: Trade) -> OrderView:
        """Wait (up to ``fill_wait``) for a market order to finish; its last view."""
        broker = session.broker
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fill_wait
        while True:
            view = broker.view(trade)
            if view.done or view.filled >= view.total_quantity:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await broker.wait_for_status(trade, min(remaining, 1.0))
            except GatewayUnavailable:
                break
        return broker.view(trade)

    def _working_liquidations(self, session: Session) -> dict[frozenset[int], Trade]:
        """Our closing orders still working, keyed by the con ids of their legs."""
        out: dict[frozenset[int], Trade] = {}
        if not session.connected:
            return out
        for trade in session.broker.open_trades():
            ref = trade.order.orderRef or ""
            if ref.startswith("liq-") and trade.contract.comboLegs:
                out[frozenset(leg.conId for leg in trade.contract.comboLegs)] = trade
        return out

    @staticmethod
    def _contract(leg: LegMark) -> OptionContract:
        return OptionContract(
            con_id=leg.con_id, symbol="QQQ", expiry=leg.expiry, strike=leg.strike, right=leg.right
        )

    def _alert(
        self,
        alert_type: AlertType,
        message: str,
        params: dict[str, Any],
        follower_id: str | None,
        *,
        severity: Severity | None = None,
        alert_id: str | None = None,
    ) -> None:
        try:
            self.alerts.publish(
                Alert.create(
                    alert_type,
                    severity,
                    message,
                    params,
                    self.now(),
                    follower_id=follower_id,
                    id=alert_id,
                )
            )
        except Exception:
            log.exception("alert publish failed")


def _fill_outcome(view: OrderView) -> tuple[bool, str]:
    """Whether a market order filled completely, and its status for the result."""
    filled = view.filled >= view.total_quantity > 0
    status = "FILLED" if filled else ("WORKING" if not view.done else view.status.upper())
    return filled, status


__all__ = [
    "FlattenResult",
    "KillSwitch",
    "Liquidator",
    "Right",
    "flatten_order_ref",
    "spread_id_of",
]
