"""The IB adapter: one follower's gateway session, over ib_async.

Everything the sidecar asks of a broker goes through :class:`IBBroker`, and
nothing above this module touches ib_async directly except through the plain
value types defined here. The adapter is deliberately thin, but it owns three
rules that protect money:

* every request has a timeout. ib_async's blocking helpers wait forever when a
  gateway never answers; a hung request would hold a follower's execution lock
  and, with it, that follower's whole trading day;
* combos are never qualified (a BAG has no contract details; real TWS answers
  with a warning and the request would hang) - only the legs are;
* order ids are chosen *before* an order is sent (:meth:`IBBroker.next_order_id`)
  so the caller can persist the id first and find the order again after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from ib_async import IB, ComboLeg, Contract, ExecutionFilter, Option, Order, Trade
from ib_async.objects import CommissionReport, Fill
from ib_async.order import OrderStatus
from ib_async.ticker import Ticker

log = logging.getLogger(__name__)

T = TypeVar("T")

#: IB's "unset" double; what-if figures and prices may carry it.
UNSET_DOUBLE = 1.7976931348623157e308

#: Statuses after which an order can no longer fill.
DONE_STATUSES = frozenset(OrderStatus.DoneStates)


class BrokerError(Exception):
    """A broker request failed; ``code``/``text`` are IB's when there are any."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(f"{code}: {text}" if code is not None else text)
        self.code = code
        self.text = text


class GatewayUnavailable(BrokerError):
    """The gateway is not connected or did not answer in time."""


class OrderRejected(BrokerError):
    """IB refused an order (error 201 and friends)."""


@dataclass(frozen=True)
class LegQuote:
    """Bid/ask of one option leg; ``valid`` is False when either side is missing."""

    bid: float
    ask: float

    @property
    def valid(self) -> bool:
        return _finite(self.bid) and _finite(self.ask) and self.bid >= 0 and self.ask > 0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@dataclass(frozen=True)
class MarginCheck:
    """What-if result of a combo plus the account's funds, as SPEC section 3.4 needs."""

    init_margin_change: float
    maint_margin_change: float
    init_margin_after: float
    equity_with_loan_after: float
    available_funds: float
    equity_with_loan: float

    @property
    def sufficient(self) -> bool:
        """True only when every figure is known and the order fits.

        Unknown figures (NaN) make this False: fail closed.
        """
        figures = (
            self.init_margin_change,
            self.available_funds,
        )
        if not all(_finite(x) for x in figures):
            return False
        if self.init_margin_change > self.available_funds:
            return False
        return not (
            _finite(self.equity_with_loan_after)
            and _finite(self.init_margin_after)
            and self.equity_with_loan_after < self.init_margin_after
        )

    def as_params(self) -> dict[str, float | None]:
        return {
            "init_margin_change": _json_float(self.init_margin_change),
            "maint_margin_change": _json_float(self.maint_margin_change),
            "init_margin_after": _json_float(self.init_margin_after),
            "equity_with_loan_after": _json_float(self.equity_with_loan_after),
            "available_funds": _json_float(self.available_funds),
            "equity_with_loan": _json_float(self.equity_with_loan),
        }


@dataclass(frozen=True)
class OrderView:
    """What the broker says about one of our orders."""

    order_id: int
    perm_id: int
    client_id: int
    order_ref: str
    status: str
    filled: float
    remaining: float
    total_quantity: float
    lmt_price: float | None
    avg_fill_price: float
    error_code: int | None = None
    error_text: str = ""

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True)
class FillRecord:
    """One execution (a leg fill, or a BAG-level report) in plain values."""

    exec_id: str
    account: str
    order_id: int
    perm_id: int
    order_ref: str
    con_id: int
    symbol: str
    sec_type: str
    right: str
    strike: float
    expiry: str
    side: str
    shares: float
    price: float
    time: datetime


@dataclass(frozen=True)
class CommissionRecord:
    exec_id: str
    commission: float
    currency: str
    realized_pnl: float


@dataclass(frozen=True)
class BrokerPosition:
    account: str
    con_id: int
    symbol: str
    sec_type: str
    right: str
    strike: float
    expiry: str
    quantity: float
    avg_cost: float


@dataclass(frozen=True)
class OptionContract:
    """A qualified option leg; ``con_id`` is what combos and positions refer to."""

    con_id: int
    symbol: str
    expiry: str
    strike: float
    right: str
    multiplier: str = "100"


@dataclass
class _Hooks:
    on_fill: list[Callable[[FillRecord], None]] = field(default_factory=list)
    on_commission: list[Callable[[CommissionRecord], None]] = field(default_factory=list)
    on_disconnect: list[Callable[[], None]] = field(default_factory=list)


def fill_time(fill: Fill) -> datetime:
    """When ``fill`` happened, as the gateway says (timezone-aware).

    ``Fill.time`` is not that: for a live fill ib_async stamps it with the
    wall-clock time the message *arrived*, so a fill replayed after a reconnect,
    or any fill from a gateway on a simulated clock (ibsim, the demo), would be
    booked at the wrong instant - and P&L groups fills by trading date. The
    execution's own time (``Execution.time``, IB's execution timestamp) is
    authoritative; ``Fill.time`` is the fallback when IB sent none (ib_async's
    default is the epoch), and "now" only when neither is usable.
    """
    for candidate in (getattr(fill.execution, "time", None), fill.time):
        if isinstance(candidate, datetime) and candidate.year > 1970:
            return candidate if candidate.tzinfo else candidate.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and abs(x) < UNSET_DOUBLE / 2


def _json_float(x: float) -> float | None:
    return float(x) if _finite(x) else None


def _to_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if _finite(out) else math.nan


class IBBroker:
    """One ib_async session to one follower's IB Gateway."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int,
        account: str,
        *,
        request_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.account = account
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._ib = IB()
        # Errors raise instead of resolving requests with None: a what-if that
        # silently returns nothing must never read as "margin fine".
        self._ib.RaiseRequestErrors = True
        self._hooks = _Hooks()
        self._order_errors: dict[int, tuple[int, str]] = {}
        self._stocks: dict[str, Contract] = {}
        # The one request of each kind on the wire, shared by concurrent callers.
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._ib.execDetailsEvent += self._on_exec
        self._ib.commissionReportEvent += self._on_commission
        self._ib.disconnectedEvent += self._on_disconnected
        self._ib.errorEvent += self._on_error

    # -- lifecycle -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ib.isConnected()

    async def connect(self) -> None:
        """Open the session (including ib_async's sync of orders and executions)."""
        try:
            await asyncio.wait_for(
                self._ib.connectAsync(
                    self.host,
                    self.port,
                    clientId=self.client_id,
                    timeout=self.connect_timeout,
                    account=self.account,
                ),
                self.connect_timeout * 3,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            self._ib.disconnect()
            raise GatewayUnavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from exc

    def disconnect(self) -> None:
        self._ib.disconnect()

    def add_fill_listener(self, fn: Callable[[FillRecord], None]) -> None:
        self._hooks.on_fill.append(fn)

    def add_commission_listener(self, fn: Callable[[CommissionRecord], None]) -> None:
        self._hooks.on_commission.append(fn)

    def add_disconnect_listener(self, fn: Callable[[], None]) -> None:
        self._hooks.on_disconnect.append(fn)

    # -- health ------------------------------------------------------------------

    async def current_time(self) -> datetime:
        """A round trip to the gateway: proves the session answers, not just an open socket."""
        return await self._call(self._ib.reqCurrentTimeAsync(), "reqCurrentTime")

    def managed_accounts(self) -> list[str]:
        return list(self._ib.managedAccounts())

    # -- contracts and quotes ------------------------------------------------------

    async def qualify_option(
        self, symbol: str, expiry: str, strike: float, right: str
    ) -> OptionContract:
        """Qualify one option leg (never a BAG)."""
        contract = Option(symbol, expiry, float(strike), right, "SMART", currency="USD")
        result = await self._call(self._ib.qualifyContractsAsync(contract), "qualify")
        if not result or not isinstance(result[0], Contract) or not result[0].conId:
            raise BrokerError(f"no unique contract for {symbol} {expiry} {strike} {right}", 200)
        c = result[0]
        return OptionContract(
            con_id=int(c.conId),
            symbol=c.symbol,
            expiry=c.lastTradeDateOrContractMonth,
            strike=float(c.strike),
            right=c.right,
            multiplier=c.multiplier or "100",
        )

    async def quote(self, *contracts: OptionContract) -> list[LegQuote]:
        """Snapshot bid/ask for each contract, in order."""
        ib_contracts = [self._option(c) for c in contracts]
        tickers: list[Ticker] = await self._call(
            self._ib.reqTickersAsync(*ib_contracts), "reqTickers"
        )
        by_con = {t.contract.conId: t for t in tickers if t.contract is not None}
        out: list[LegQuote] = []
        for c in contracts:
            t = by_con.get(c.con_id)
            if t is None:
                out.append(LegQuote(math.nan, math.nan))
            else:
                out.append(LegQuote(_to_float(t.bid), _to_float(t.ask)))
        return out

    async def quote_underlying(self, symbol: str = "QQQ") -> LegQuote:
        """Bid/ask of the underlying stock (qualified once, then by conId)."""
        stock = self._stocks.get(symbol)
        if stock is None:
            query = Contract(secType="STK", symbol=symbol, exchange="SMART", currency="USD")
            found = await self._call(self._ib.qualifyContractsAsync(query), "qualify")
            if not found or not isinstance(found[0], Contract) or not found[0].conId:
                raise BrokerError(f"no unique stock contract for {symbol}", 200)
            stock = found[0]
            self._stocks[symbol] = stock
        tickers: list[Ticker] = await self._call(self._ib.reqTickersAsync(stock), "reqTickers")
        if not tickers:
            return LegQuote(math.nan, math.nan)
        return LegQuote(_to_float(tickers[0].bid), _to_float(tickers[0].ask))

    # -- orders --------------------------------------------------------------------

    def bag(self, legs: list[tuple[OptionContract, str]]) -> Contract:
        """A combo of ``(leg, "BUY"|"SELL")`` with ratio 1 each, SMART-routed."""
        symbol = legs[0][0].symbol
        return Contract(
            secType="BAG",
            symbol=symbol,
            exchange="SMART",
            currency="USD",
            comboLegs=[
                ComboLeg(conId=leg.con_id, ratio=1, action=action, exchange="SMART")
                for leg, action in legs
            ],
        )

    async def position_contract(self, con_id: int) -> Contract:
        """The full contract of a held position, ready to be ordered.

        Positions come with an empty exchange (IB's, and ibsim's), and an
        order without one is refused; a SMART-routed stock order also needs
        its primary exchange to be unambiguous. Qualifying the conId fills
        both from IB's own contract details instead of guessing them here.
        """
        query = Contract(conId=int(con_id), exchange="SMART")
        found = await self._call(self._ib.qualifyContractsAsync(query), "qualify")
        if not found or not isinstance(found[0], Contract) or not found[0].conId:
            raise BrokerError(f"no contract with conId {con_id}", 200)
        contract: Contract = found[0]
        contract.exchange = "SMART"
        if contract.secType == "STK" and not contract.primaryExchange:
            raise BrokerError(f"stock {contract.symbol} has no primary exchange", 200)
        return contract

    def next_order_id(self) -> int:
        """Reserve an order id so it can be persisted before the order is sent."""
        if not self.connected:
            raise GatewayUnavailable("not connected")
        return int(self._ib.client.getReqId())

    def limit_order(self, order_id: int, qty: int, limit: float, order_ref: str) -> Order:
        return Order(
            orderId=order_id,
            action="BUY",
            totalQuantity=qty,
            orderType="LMT",
            lmtPrice=round(limit, 2),
            tif="DAY",
            orderRef=order_ref,
            account=self.account,
            transmit=True,
        )

    def market_order(self, order_id: int, action: str, qty: int, order_ref: str) -> Order:
        return Order(
            orderId=order_id,
            action=action,
            totalQuantity=qty,
            orderType="MKT",
            tif="DAY",
            orderRef=order_ref,
            account=self.account,
            transmit=True,
        )

    async def what_if(self, bag: Contract, order: Order) -> MarginCheck:
        """Margin impact of ``order`` plus the account's available funds.

        The what-if answer carries the account's state before the order
        (equity with loan and initial margin), and IB's available funds are
        exactly their difference, so no second request is needed: one round
        trip less on the way to every entry order. Only when those figures
        are missing (a gateway that leaves them unset) is the account summary
        asked; with neither, the figures stay unknown and the check fails closed.
        """
        state = await self._call(self._ib.whatIfOrderAsync(bag, order), "whatIf")
        if state is None:
            raise BrokerError("what-if returned nothing")
        ewl_before = _to_float(state.equityWithLoanBefore)
        init_before = _to_float(state.initMarginBefore)
        if _finite(ewl_before) and _finite(init_before):
            available, ewl = ewl_before - init_before, ewl_before
        else:
            summary = await self._call(self._ib.accountSummaryAsync(self.account), "accountSummary")
            values = {v.tag: v.value for v in summary}
            available = _to_float(values.get("AvailableFunds"))
            ewl = _to_float(values.get("EquityWithLoanValue"))
        return MarginCheck(
            init_margin_change=_to_float(state.initMarginChange),
            maint_margin_change=_to_float(state.maintMarginChange),
            init_margin_after=_to_float(state.initMarginAfter),
            equity_with_loan_after=_to_float(state.equityWithLoanAfter),
            available_funds=available,
            equity_with_loan=ewl,
        )

    def place(self, contract: Contract, order: Order) -> Trade:
        """Send a new order (its id must already be set and persisted)."""
        if not self.connected:
            raise GatewayUnavailable("not connected")
        if not order.orderId:
            raise ValueError("order id must be reserved and persisted before placing")
        return self._ib.placeOrder(contract, order)

    def modify_limit(self, trade: Trade, limit: float) -> None:
        """Move a working order's limit in place (same order id), never cancel/replace."""
        if not self.connected:
            raise GatewayUnavailable("not connected")
        if trade.orderStatus.status in DONE_STATUSES:
            return
        trade.order.lmtPrice = round(limit, 2)
        self._ib.placeOrder(trade.contract, trade.order)

    def cancel(self, trade: Trade) -> None:
        if not self.connected:
            raise GatewayUnavailable("not connected")
        if trade.orderStatus.status not in DONE_STATUSES:
            self._ib.cancelOrder(trade.order)

    def view(self, trade: Trade) -> OrderView:
        code, text = self._order_errors.get(trade.order.orderId, (None, ""))
        if code is None:
            for entry in reversed(trade.log):
                if entry.errorCode:
                    code, text = entry.errorCode, entry.message
                    break
        lmt = _to_float(trade.order.lmtPrice)
        filled = float(trade.orderStatus.filled or 0.0)
        # A completed order (reqCompletedOrders) carries its fills here instead.
        completed_qty = _to_float(trade.order.filledQuantity)
        if _finite(completed_qty):
            filled = max(filled, completed_qty)
        return OrderView(
            order_id=int(trade.order.orderId),
            perm_id=int(trade.order.permId or trade.orderStatus.permId or 0),
            client_id=int(trade.order.clientId),
            order_ref=trade.order.orderRef or "",
            status=trade.orderStatus.status,
            filled=filled,
            remaining=float(trade.orderStatus.remaining or 0.0),
            total_quantity=float(trade.order.totalQuantity),
            lmt_price=lmt if _finite(lmt) else None,
            avg_fill_price=float(trade.orderStatus.avgFillPrice or 0.0),
            error_code=code,
            error_text=text,
        )

    async def wait_for_status(self, trade: Trade, wait_seconds: float) -> None:
        """Wait up to ``timeout`` wall seconds for the next status change of ``trade``."""
        event = asyncio.Event()

        def _set(*_: object) -> None:
            event.set()

        trade.statusEvent += _set
        trade.fillEvent += _set
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), wait_seconds)
        finally:
            trade.statusEvent -= _set
            trade.fillEvent -= _set

    # -- reconciliation --------------------------------------------------------------

    async def refresh_open_orders(self) -> list[Trade]:
        """Ask the gateway for this client's open orders (re-binds them after a reconnect).

        Each order once: ib_async adds every openOrder that arrives while the
        request is pending to its answer, so an order acknowledged or updated
        meanwhile is listed again by the answer itself. ib_async keeps one
        Trade per order, so repeats are the same object.
        """
        return list(await self._single_flight("openOrders", self._fetch_open_orders))

    async def _fetch_open_orders(self) -> list[Trade]:
        trades = await self._call(self._ib.reqOpenOrdersAsync(), "reqOpenOrders")
        return list({id(t): t for t in trades}.values())

    def open_trades(self) -> list[Trade]:
        """Orders of this session that can still fill."""
        return list(self._ib.openTrades())

    def trades_by_ref(self, order_ref: str) -> list[Trade]:
        """Every order this session knows (open or completed) carrying ``order_ref``."""
        return [t for t in self._ib.trades() if t.order.orderRef == order_ref]

    async def completed_orders(self) -> list[Trade]:
        return list(await self._call(self._ib.reqCompletedOrdersAsync(False), "reqCompletedOrders"))

    async def executions(self) -> list[FillRecord]:
        """All of today's executions for the account (every client id)."""
        fills: list[Fill] = await self._call(
            self._ib.reqExecutionsAsync(ExecutionFilter(acctCode=self.account)), "reqExecutions"
        )
        return [self._fill_record(f) for f in fills]

    def known_commissions(self) -> list[CommissionRecord]:
        out = []
        for fill in self._ib.fills():
            rep = fill.commissionReport
            if rep.execId:
                out.append(self._commission_record(rep))
        return out

    async def positions(self) -> list[BrokerPosition]:
        """The account's positions; concurrent callers share one request (single flight).

        ib_async keeps ONE pending request under the key "positions": a second
        ``reqPositions`` while the first is unanswered replaces the first's
        future and result list, so the first caller never resolves (it times
        out) and the answer is split between them - a spread may read as one
        leg. tv_monitor and pnl_mtm both ask at :00 of every minute, so this
        is the normal case, not a race in theory. Callers arriving while a
        request is on the wire therefore await that same request; it is the
        freshest answer the gateway can give them anyway (IB answers a
        position request with the full current book). A failure reaches every
        waiter, and a waiter that is cancelled does not cancel the request for
        the others (``shield``). The next call after the answer sends a new
        request: nothing is cached.
        """
        return list(await self._single_flight("positions", self._fetch_positions))

    async def _single_flight(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """Await the ``key`` request already on the wire, or send one.

        ib_async keys a pending request by kind ("positions", "openOrders"):
        a second one of a kind while the first is unanswered takes over its
        future, so the first never resolves (see ``positions``). The
        reconciler and an execution may both refresh open orders around a
        reconnect; tv_monitor and pnl_mtm both ask for positions at :00.
        """
        task = self._inflight.get(key)
        if task is None or task.done():
            task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._flight_done(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _flight_done(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        # Mark the exception retrieved even when every waiter was cancelled,
        # so asyncio does not log "exception was never retrieved".
        if not task.cancelled():
            task.exception()

    async def _fetch_positions(self) -> list[BrokerPosition]:
        """One entry per (account, conId): the last message for it; flat ones left out.

        A reqPositions also subscribes, and ib_async adds every ``position``
        message that arrives while an answer is pending to that answer, so a
        streamed update after a fill that lands between our request and its
        positionEnd is followed by the same contract again in the full list: the
        conId appears twice and a 4-lot spread reads as 8. The gateway sends in
        order, so the later message for a contract is the newer one. Quantity 0
        (a streamed close, or a position closed today that IB may still list)
        means "not held" to every caller, so it is dropped here.
        """
        raw = await self._call(self._ib.reqPositionsAsync(), "reqPositions")
        latest: dict[tuple[str, int], BrokerPosition] = {}
        for p in raw:
            if self.account and p.account != self.account:
                continue
            c = p.contract
            pos = BrokerPosition(
                account=p.account,
                con_id=int(c.conId),
                symbol=c.symbol,
                sec_type=c.secType,
                right=c.right,
                strike=float(c.strike or 0.0),
                expiry=c.lastTradeDateOrContractMonth,
                quantity=float(p.position),
                avg_cost=float(p.avgCost),
            )
            latest[(pos.account, pos.con_id)] = pos
        return [p for p in latest.values() if p.quantity != 0]

    # -- internals ---------------------------------------------------------------------

    async def _call(self, aw: Awaitable[T], what: str) -> T:
        if not self.connected:
            if asyncio.iscoroutine(aw):
                aw.close()
            raise GatewayUnavailable(f"{what}: not connected")
        try:
            return await asyncio.wait_for(aw, self.request_timeout)
        except TimeoutError as exc:
            raise GatewayUnavailable(f"{what}: no answer in {self.request_timeout}s") from exc
        except ConnectionError as exc:
            raise GatewayUnavailable(f"{what}: {exc}") from exc
        except Exception as exc:
            code = getattr(exc, "code", None)
            text = getattr(exc, "message", None) or str(exc)
            raise BrokerError(f"{what}: {text}", code if isinstance(code, int) else None) from exc

    @staticmethod
    def _option(c: OptionContract) -> Contract:
        return Contract(
            conId=c.con_id,
            symbol=c.symbol,
            secType="OPT",
            lastTradeDateOrContractMonth=c.expiry,
            strike=c.strike,
            right=c.right,
            multiplier=c.multiplier,
            exchange="SMART",
            currency="USD",
        )

    def _on_error(self, req_id: int, code: int, text: str, _contract: object) -> None:
        if req_id > 0:
            self._order_errors[req_id] = (code, text)

    def _on_exec(self, _trade: Trade, fill: Fill) -> None:
        rec = self._fill_record(fill)
        for fn in self._hooks.on_fill:
            try:
                fn(rec)
            except Exception:
                log.exception("fill listener failed")

    def _on_commission(self, _trade: Trade, _fill: Fill, report: CommissionReport) -> None:
        rec = self._commission_record(report)
        for fn in self._hooks.on_commission:
            try:
                fn(rec)
            except Exception:
                log.exception("commission listener failed")

    def _on_disconnected(self) -> None:
        for fn in self._hooks.on_disconnect:
            try:
                fn()
            except Exception:
                log.exception("disconnect listener failed")

    def _fill_record(self, fill: Fill) -> FillRecord:
        c, e = fill.contract, fill.execution
        t = fill_time(fill)
        return FillRecord(
            exec_id=e.execId,
            account=e.acctNumber,
            order_id=int(e.orderId),
            perm_id=int(e.permId),
            order_ref=e.orderRef or "",
            con_id=int(c.conId),
            symbol=c.symbol,
            sec_type=c.secType,
            right=c.right,
            strike=float(c.strike or 0.0),
            expiry=c.lastTradeDateOrContractMonth,
            side=e.side,
            shares=float(e.shares),
            price=float(e.price),
            time=t,
        )

    @staticmethod
    def _commission_record(rep: CommissionReport) -> CommissionRecord:
        return CommissionRecord(
            exec_id=rep.execId,
            commission=float(rep.commission),
            currency=rep.currency,
            realized_pnl=float(rep.realizedPNL or 0.0),
        )
