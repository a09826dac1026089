"""Orders: the state machine, combo pricing, fills, margin checks and expiry.

The broker is transport-free: every operation returns a list of *events* in
the order a client must see them, and the server turns events into wire
messages and routes them (order events to the owning client and client 0).

Combo pricing follows IB's convention: the price of a combo is the sum of its
BUY legs minus the sum of its SELL legs (ratio-weighted), so a credit spread
bought as a combo has a negative price and a BUY combo at limit L fills only at
a combo price <= L.

Fill model (documented choice, deterministic for a seed):
- a marketable order (BUY limit >= natural ask, SELL limit <= natural bid, or
  MKT) fills completely at once *at the natural price* (price improvement to
  natural, never worse than the limit);
- a limit between mid and natural fills *at its limit* with a hazard rate per
  simulated second that rises from 2%/s at mid to about 50%/s next to natural;
  below mid it never fills. Each hazard event fills either everything or a
  random part of the remainder (partial fills for quantity > 1);
- the hazard is integrated once per simulated second, at half-second
  offsets from the moment the limit was last set (placement or
  modification: 0.5 s, 1.5 s, ... after it), with a random threshold per
  fill event drawn from an RNG seeded by (seed, account, the order's rank
  among its account's orders). Not by the global permId: that depends on how
  orders of *different* accounts interleave (the demo's followers order
  concurrently), which would deal each account different fills from run to
  run. Why the grid follows the last change: a ladder moves its limit every
  5 s, and on a compressed clock each move arrives a little earlier or later
  than in another run; with the grid at the change, a move that is up to
  half a second off still sees the same evaluations, so the same seed and
  the same requests give the same fills however fast the server loop runs
  and whichever account trades first. Before a modification or a cancel is
  applied, the order is first brought up to date under its old terms (a fill
  that was due happens first, as at a real exchange).
Executions are reported PER LEG only (no BAG-level execution): each leg's
execution carries the leg contract, the order's id and permId, BOT/SLD for the
leg's effective side, and gets its own commission report ($0.65 a contract).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from .accounts import Account, Holding, commission_for, margin_requirement, snapshot
from .contracts import STOCK, Chain, ContractQuery, Instrument
from .market import Market, expiry_close

LIVE_STATES = ("PendingSubmit", "PreSubmitted", "Submitted")
DONE_STATES = ("Filled", "Cancelled", "ApiCancelled", "Inactive")
_EPS = 1e-9
MAX_GRID_STEPS = 7200


@dataclass
class ComboLegSpec:
    """One leg as the client described it in placeOrder/reqMktData."""

    con_id: int
    ratio: int = 1
    action: str = "BUY"
    exchange: str = "SMART"
    open_close: int = 0
    short_sale_slot: int = 0
    designated_location: str = ""
    exempt_code: int = -1


@dataclass
class OrderTicket:
    """The parts of a placeOrder request the simulator acts on or echoes back."""

    order_id: int
    contract: ContractQuery
    legs: list[ComboLegSpec] = field(default_factory=list)
    action: str = "BUY"
    total_quantity: float = 0.0
    order_type: str = "LMT"
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    account: str = ""
    open_close: str = ""
    origin: int = 0
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    what_if: bool = False
    smart_combo_params: list[tuple[str, str]] = field(default_factory=list)
    order_combo_prices: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class Leg:
    """A resolved combo leg: ``sign`` is +1 for a BUY leg and -1 for a SELL leg."""

    instrument: Instrument
    ratio: int
    sign: int


@dataclass
class Execution:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    instrument: Instrument
    side: str  # BOT / SLD
    shares: float
    price: float
    time: datetime
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    realized: float | None
    liquidity: int = 1


@dataclass
class WorkingOrder:
    ticket: OrderTicket
    client_id: int
    perm_id: int
    account: str
    legs: list[Leg]
    created: datetime
    #: fill draws (seeded by seed, account and rank: see the module docstring)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    status: str = "PendingSubmit"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    hazard: float = 0.0
    threshold: float = 1.0
    #: simulated epoch of the next hazard evaluation (see the module docstring)
    next_eval: float = 0.0
    completed_time: datetime | None = None
    completed_status: str = ""
    leg_cum: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def order_id(self) -> int:
        return self.ticket.order_id

    @property
    def is_combo(self) -> bool:
        return self.ticket.contract.sec_type.upper() == "BAG"

    @property
    def remaining(self) -> float:
        return max(0.0, self.ticket.total_quantity - self.filled)

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATES

    @property
    def direction(self) -> int:
        return 1 if self.ticket.action.upper() == "BUY" else -1

    def instruments(self) -> list[Instrument]:
        return [leg.instrument for leg in self.legs]


# -- events ---------------------------------------------------------------------


@dataclass(frozen=True)
class OrderUpdate:
    """openOrder and/or orderStatus for ``order``, in the order given by ``parts``.

    ``order`` is a snapshot taken when the event was created: one broker call
    can emit several updates of the same order (acknowledged, then filled) and
    each must show the state of its own moment.
    """

    order: WorkingOrder
    parts: tuple[str, ...] = ("open", "status")
    status: str = ""

    @classmethod
    def of(cls, order: WorkingOrder, parts: tuple[str, ...], status: str) -> OrderUpdate:
        frozen = copy.copy(order)
        frozen.ticket = copy.copy(order.ticket)
        return cls(frozen, parts, status)


@dataclass(frozen=True)
class ExecReport:
    order: WorkingOrder
    execution: Execution


@dataclass(frozen=True)
class CommissionEvent:
    order: WorkingOrder
    execution: Execution


@dataclass(frozen=True)
class OrderError:
    account: str
    client_id: int
    order_id: int
    code: int
    text: str


@dataclass(frozen=True)
class MarginState:
    """The numbers of a what-if reply (IB's OrderState margin fields)."""

    init_before: float
    maint_before: float
    ewl_before: float
    init_change: float
    maint_change: float
    ewl_change: float
    init_after: float
    maint_after: float
    ewl_after: float
    commission: float


@dataclass(frozen=True)
class WhatIfResult:
    account: str
    client_id: int
    ticket: OrderTicket
    legs: tuple[Leg, ...]
    state: MarginState


@dataclass(frozen=True)
class AccountChanged:
    account: str


Event = OrderUpdate | ExecReport | CommissionEvent | OrderError | WhatIfResult | AccountChanged


@dataclass
class ComboQuote:
    bid: float
    ask: float
    mid: float


def combo_quote(market: Market, legs: list[Leg], moment: datetime | None = None) -> ComboQuote:
    """Bid/ask/mid of a combo per IB's convention (BUY legs minus SELL legs)."""
    bid = ask = mid = 0.0
    for leg in legs:
        q = market.quote(leg.instrument, moment)
        if leg.sign > 0:
            bid += leg.ratio * q.bid
            ask += leg.ratio * q.ask
        else:
            bid -= leg.ratio * q.ask
            ask -= leg.ratio * q.bid
        mid += leg.sign * leg.ratio * q.mid
    return ComboQuote(round(bid, 2), round(ask, 2), mid)


def allocate_leg_prices(
    market: Market, legs: list[Leg], combo_price: float, moment: datetime | None = None
) -> list[float]:
    """Per-leg prices (per share, >= 0, on the penny grid) summing to the combo price."""
    prices = [round(market.quote(leg.instrument, moment).mid, 2) for leg in legs]
    if len(legs) == 1:
        return [round(abs(combo_price), 2)]
    total = sum(leg.sign * leg.ratio * p for leg, p in zip(legs, prices, strict=True))
    diff = round(combo_price - total, 2)
    order = sorted(range(len(legs)), key=lambda i: -prices[i])
    for i in order:
        if abs(diff) < _EPS:
            break
        leg = legs[i]
        wanted = prices[i] + leg.sign * diff / leg.ratio
        new = max(0.0, round(wanted, 2))
        diff = round(diff - leg.sign * leg.ratio * (new - prices[i]), 2)
        prices[i] = new
    return prices


def fill_rng(seed: int, account: str, rank: int) -> random.Random:
    """The fill draws of an account's ``rank``-th order (1 = its first)."""
    return random.Random(f"ibsim-fill:{seed}:{account}:{rank}")


class Broker:
    """Order handling and account effects for every simulated account."""

    def __init__(
        self,
        market: Market,
        chain: Chain,
        accounts: dict[str, Account],
        seed: int = 0,
    ) -> None:
        self.market = market
        self.chain = chain
        self.accounts = accounts
        self.seed = seed
        self.orders: dict[tuple[str, int, int], WorkingOrder] = {}
        self.by_perm: dict[int, WorkingOrder] = {}
        self.executions: dict[str, list[Execution]] = {a: [] for a in accounts}
        self._next_perm = 100_000_001
        self._placed: dict[str, int] = dict.fromkeys(accounts, 0)
        self._next_exec = 1
        self._max_order_id: dict[str, int] = dict.fromkeys(accounts, 0)
        # faults
        self.reject_next = 0
        self.reject_next_modifications = 0
        self.fills_paused = False
        now = market.clock.now()
        self._expired_days: set[date] = {d for d in chain.expiries() if expiry_close(d) <= now}

    # -- queries --------------------------------------------------------------

    def next_valid_id(self, account: str) -> int:
        return self._max_order_id.get(account, 0) + 1

    def live_orders(self, account: str, client_id: int | None = None) -> list[WorkingOrder]:
        return [
            o
            for (acct, cid, _), o in self.orders.items()
            if acct == account and o.is_live and (client_id is None or cid == client_id)
        ]

    def completed_orders(self, account: str) -> list[WorkingOrder]:
        return [o for (acct, _, _), o in self.orders.items() if acct == account and not o.is_live]

    def marks(self, account: Account) -> dict[int, float]:
        return {
            p.instrument.con_id: self.market.mark(p.instrument) for p in account.open_positions()
        }

    def resolve_legs(self, ticket: OrderTicket) -> list[Leg] | None:
        """The instruments an order or quote request refers to, or None if unknown."""
        contract = ticket.contract
        if contract.sec_type.upper() == "BAG":
            if not ticket.legs:
                return None
            legs: list[Leg] = []
            for spec in ticket.legs:
                inst = self.chain.resolve(spec.con_id)
                if inst is None:
                    return None
                sign = 1 if spec.action.upper() == "BUY" else -1
                legs.append(Leg(inst, max(1, spec.ratio), sign))
            return legs
        today = self.market.clock.now().date()
        found = self.chain.match(contract, today, limit=2)
        if len(found) != 1:
            return None
        return [Leg(found[0], 1, 1)]

    # -- order entry ----------------------------------------------------------

    def place(self, account_id: str, client_id: int, ticket: OrderTicket) -> list[Event]:
        account = self.accounts[account_id]
        key = (account_id, client_id, ticket.order_id)
        self._max_order_id[account_id] = max(self._max_order_id.get(account_id, 0), ticket.order_id)
        existing = self.orders.get(key)
        if ticket.what_if:
            return self._what_if(account, client_id, ticket)
        if existing is not None:
            caught_up = self._catch_up(existing)
            if caught_up:
                # A fill that was due before this request happens first; the
                # request then meets the order as it is now.
                return caught_up + self.place(account_id, client_id, ticket)
            if existing.is_live:
                if self.reject_next_modifications > 0:
                    # As IB does with a refused modification: error 201, and the
                    # order keeps working unchanged (previous price and quantity).
                    self.reject_next_modifications -= 1
                    return [
                        self._reject(
                            account_id, client_id, ticket.order_id, "simulated modify rejection"
                        )
                    ]
                return self._modify(existing, ticket)
            return [self._error(existing.account, client_id, ticket.order_id, 103)]
        legs = self.resolve_legs(ticket)
        if legs is None:
            return [self._error(account_id, client_id, ticket.order_id, 200)]
        if any(self.market.is_expired(leg.instrument) for leg in legs):
            return [self._reject(account_id, client_id, ticket.order_id, "contract has expired")]
        if ticket.order_type.upper() not in ("LMT", "MKT"):
            return [
                self._reject(
                    account_id, client_id, ticket.order_id, f"order type {ticket.order_type}"
                )
            ]
        if ticket.order_type.upper() == "LMT" and ticket.lmt_price is None:
            return [self._reject(account_id, client_id, ticket.order_id, "missing limit price")]
        if ticket.total_quantity <= 0:
            return [self._reject(account_id, client_id, ticket.order_id, "quantity must be > 0")]
        if self.reject_next > 0:
            self.reject_next -= 1
            return [self._reject(account_id, client_id, ticket.order_id, "simulated rejection")]
        state = self.margin_state(account, ticket, legs)
        if (
            state.init_change > 0
            and state.init_change > state.ewl_before - state.init_before + _EPS
        ):
            reason = (
                "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR "
                f"EQUITY WITH LOAN VALUE [{state.ewl_before:.2f} USD] MUST EXCEED THE INITIAL "
                f"MARGIN [{state.init_after:.2f} USD]"
            )
            return [self._reject(account_id, client_id, ticket.order_id, reason)]
        perm_id = self._next_perm
        self._next_perm += 1
        self._placed[account_id] = self._placed.get(account_id, 0) + 1
        now = self.market.clock.now()
        order = WorkingOrder(
            ticket=ticket,
            client_id=client_id,
            perm_id=perm_id,
            account=account_id,
            legs=legs,
            created=now,
            rng=fill_rng(self.seed, account_id, self._placed[account_id]),
            next_eval=now.timestamp() + 0.5,
        )
        order.threshold = order.rng.expovariate(1.0)
        self.orders[key] = order
        self.by_perm[perm_id] = order
        order.status = "PreSubmitted"
        events: list[Event] = [OrderUpdate.of(order, ("open", "status"), "PreSubmitted")]
        order.status = "Submitted"
        events.append(OrderUpdate.of(order, ("open", "status"), "Submitted"))
        events += self._check_marketable(order, now)
        return events

    def _modify(self, order: WorkingOrder, ticket: OrderTicket) -> list[Event]:
        old = order.ticket
        if ticket.total_quantity < order.filled:
            ticket.total_quantity = order.filled
        ticket.legs = old.legs if not ticket.legs else ticket.legs
        order.ticket = ticket
        now = self.market.clock.now()
        order.next_eval = now.timestamp() + 0.5
        events: list[Event] = [OrderUpdate.of(order, ("open", "status"), "Submitted")]
        if order.remaining <= 0:
            events += self._finish(order, "Filled")
            return events
        events += self._check_marketable(order, now)
        return events

    def _catch_up(self, order: WorkingOrder) -> list[Event]:
        """Evaluations of ``order`` due by now, under its current terms."""
        if self.fills_paused or not order.is_live:
            return []
        return self._advance(order, self.market.clock.now().timestamp())

    def cancel(self, account_id: str, client_id: int, order_id: int) -> list[Event]:
        order = self.orders.get((account_id, client_id, order_id))
        if order is None:
            return [
                OrderError(
                    account_id,
                    client_id,
                    order_id,
                    10147,
                    f"OrderId {order_id} that needs to be cancelled is not found.",
                )
            ]
        caught_up = self._catch_up(order)
        if caught_up:
            return caught_up + self.cancel(account_id, client_id, order_id)
        if not order.is_live:
            return [
                OrderError(
                    account_id,
                    client_id,
                    order_id,
                    10148,
                    f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                    f"state: {order.status}.",
                )
            ]
        return self._cancel(order, "")

    def global_cancel(self, account_id: str) -> list[Event]:
        events: list[Event] = []
        for order in self.live_orders(account_id):
            events += self._cancel(order, "")
        return events

    def _cancel(self, order: WorkingOrder, reason: str) -> list[Event]:
        order.status = "Cancelled"
        order.completed_time = self.market.clock.now()
        order.completed_status = reason or "Cancelled by user"
        return [
            OrderUpdate.of(order, ("status",), "Cancelled"),
            OrderError(
                order.account,
                order.client_id,
                order.order_id,
                202,
                f"Order Canceled - reason:{reason}",
            ),
        ]

    # -- margin ---------------------------------------------------------------

    def margin_state(self, account: Account, ticket: OrderTicket, legs: list[Leg]) -> MarginState:
        """Reg-T style margin before and after the order fills at its limit (or natural)."""
        marks = self.marks(account)
        for leg in legs:
            marks.setdefault(leg.instrument.con_id, self.market.mark(leg.instrument))
        before = snapshot(account, marks)
        direction = 1 if ticket.action.upper() == "BUY" else -1
        cq = combo_quote(self.market, legs) if len(legs) > 1 else None
        if ticket.order_type.upper() == "LMT" and ticket.lmt_price is not None:
            price = ticket.lmt_price
        elif cq is not None:
            price = cq.ask if direction > 0 else cq.bid
        else:
            q = self.market.quote(legs[0].instrument)
            price = q.ask if direction > 0 else q.bid
        if len(legs) == 1:
            leg_prices = [abs(price)]
        else:
            leg_prices = allocate_leg_prices(self.market, legs, price)
        qty = ticket.total_quantity
        holdings = account.holdings(marks)
        commission = 0.0
        mid_value = 0.0
        for leg, leg_price in zip(legs, leg_prices, strict=True):
            signed = direction * leg.sign * leg.ratio * qty
            holdings.append(Holding(leg.instrument, signed, leg_price))
            commission += commission_for(leg.instrument, leg.ratio * qty)
            mark = marks[leg.instrument.con_id]
            mid_value += signed * (mark - leg_price) * leg.instrument.multiplier
        after = margin_requirement(holdings)
        ewl_change = round(mid_value - commission, 2)
        return MarginState(
            init_before=before.init_margin,
            maint_before=before.maint_margin,
            ewl_before=before.equity_with_loan,
            init_change=round(after.initial - before.init_margin, 2),
            maint_change=round(after.maintenance - before.maint_margin, 2),
            ewl_change=ewl_change,
            init_after=after.initial,
            maint_after=after.maintenance,
            ewl_after=round(before.equity_with_loan + ewl_change, 2),
            commission=round(commission, 2),
        )

    def _what_if(self, account: Account, client_id: int, ticket: OrderTicket) -> list[Event]:
        legs = self.resolve_legs(ticket)
        if legs is None:
            return [self._error(account.account_id, client_id, ticket.order_id, 200)]
        state = self.margin_state(account, ticket, legs)
        return [WhatIfResult(account.account_id, client_id, ticket, tuple(legs), state)]

    # -- fills ----------------------------------------------------------------

    def _natural_and_mid(
        self, order: WorkingOrder, moment: datetime | None
    ) -> tuple[float, float, float]:
        """(natural for this order's side, mid, far side) of the order's contract."""
        if order.is_combo or len(order.legs) > 1:
            cq = combo_quote(self.market, order.legs, moment)
            bid, ask, mid = cq.bid, cq.ask, cq.mid
        else:
            q = self.market.quote(order.legs[0].instrument, moment)
            bid, ask, mid = q.bid, q.ask, q.mid
        if order.direction > 0:
            return ask, mid, bid
        return bid, mid, ask

    def _is_marketable(self, order: WorkingOrder, natural: float) -> bool:
        if order.ticket.order_type.upper() == "MKT":
            return True
        limit = order.ticket.lmt_price
        if limit is None:
            return False
        if order.direction > 0:
            return round(limit, 2) >= round(natural, 2) - _EPS
        return round(limit, 2) <= round(natural, 2) + _EPS

    def _rate(self, order: WorkingOrder, natural: float, mid: float) -> float:
        """Fill hazard per simulated second for a resting limit order."""
        limit = order.ticket.lmt_price
        if limit is None:
            return 0.0
        gap = (natural - mid) * order.direction
        if gap <= _EPS:
            return 0.0
        x = (limit - mid) * order.direction / gap
        if x < -_EPS:
            return 0.0
        x = min(1.0, max(0.0, x))
        return 0.02 + 0.5 * x * x

    def _check_marketable(self, order: WorkingOrder, moment: datetime) -> list[Event]:
        if self.fills_paused or not order.is_live:
            return []
        natural, _, _ = self._natural_and_mid(order, None)
        if self._is_marketable(order, natural):
            return self._fill(order, order.remaining, natural, moment)
        return []

    def step(self, now: datetime | None = None) -> list[Event]:
        """Advance fills and expiries to ``now`` on the one-second simulated grid."""
        now = now or self.market.clock.now()
        events: list[Event] = []
        if not self.fills_paused:
            current = now.timestamp()
            for order in list(self.orders.values()):
                if order.is_live:
                    events += self._advance(order, current)
        events += self._expire_due(now)
        return events

    def _advance(self, order: WorkingOrder, current: float) -> list[Event]:
        events: list[Event] = []
        behind = current - order.next_eval
        if behind > MAX_GRID_STEPS:
            order.next_eval += math.floor(behind - MAX_GRID_STEPS)
        while order.next_eval <= current and order.is_live:
            moment = datetime.fromtimestamp(order.next_eval, UTC)
            order.next_eval += 1.0
            if any(self.market.is_expired(leg.instrument, moment) for leg in order.legs):
                break
            natural, mid, _ = self._natural_and_mid(order, moment)
            if self._is_marketable(order, natural):
                events += self._fill(order, order.remaining, natural, moment)
                break
            order.hazard += self._rate(order, natural, mid)
            if order.hazard >= order.threshold:
                remaining = int(order.remaining)
                if remaining > 1 and order.rng.random() < 0.5:
                    qty = float(order.rng.randint(1, remaining - 1))
                else:
                    qty = order.remaining
                limit = order.ticket.lmt_price
                assert limit is not None
                events += self._fill(order, qty, limit, moment)
                order.hazard = 0.0
                order.threshold = order.rng.expovariate(1.0)
        return events

    def _fill(self, order: WorkingOrder, qty: float, price: float, moment: datetime) -> list[Event]:
        """Execute ``qty`` units of ``order`` at combo/unit ``price``: per-leg executions."""
        if qty <= 0:
            return []
        price = round(price, 2)
        account = self.accounts[order.account]
        if len(order.legs) == 1 and not order.is_combo:
            leg_prices = [price]
        else:
            leg_prices = allocate_leg_prices(self.market, order.legs, price, moment)
        events: list[Event] = []
        executions: list[Execution] = []
        for leg, leg_price in zip(order.legs, leg_prices, strict=True):
            shares = qty * leg.ratio
            signed = order.direction * leg.sign * shares
            commission = commission_for(leg.instrument, shares)
            result = account.apply_fill(leg.instrument, signed, leg_price, commission)
            cum, notional = order.leg_cum.get(leg.instrument.con_id, (0.0, 0.0))
            cum += shares
            notional += shares * leg_price
            order.leg_cum[leg.instrument.con_id] = (cum, notional)
            execution = Execution(
                exec_id=self._exec_id(order.perm_id),
                order_id=order.order_id,
                client_id=order.client_id,
                perm_id=order.perm_id,
                account=order.account,
                instrument=leg.instrument,
                side="BOT" if signed > 0 else "SLD",
                shares=shares,
                price=leg_price,
                time=moment,
                cum_qty=cum,
                avg_price=round(notional / cum, 6),
                order_ref=order.ticket.order_ref,
                commission=commission,
                realized=result.realized,
            )
            self.executions[order.account].append(execution)
            executions.append(execution)
            events.append(ExecReport(order, execution))
        total_value = order.avg_fill_price * order.filled + price * qty
        order.filled += qty
        order.avg_fill_price = round(total_value / order.filled, 6)
        order.last_fill_price = price
        if order.remaining <= _EPS:
            events += self._finish(order, "Filled", moment)
        else:
            events.append(OrderUpdate.of(order, ("status",), "Submitted"))
        events += [CommissionEvent(order, e) for e in executions]
        events.append(AccountChanged(order.account))
        return events

    def _finish(
        self, order: WorkingOrder, status: str, moment: datetime | None = None
    ) -> list[Event]:
        order.status = status
        order.completed_time = moment or self.market.clock.now()
        order.completed_status = status
        return [OrderUpdate.of(order, ("status", "open"), status)]

    def _exec_id(self, perm_id: int) -> str:
        seq = self._next_exec
        self._next_exec += 1
        return f"0000e0d5.{perm_id:08x}.{seq:02x}.01"

    # -- expiry ---------------------------------------------------------------

    def _expire_due(self, now: datetime) -> list[Event]:
        events: list[Event] = []
        for day in self.chain.expiries():
            if day in self._expired_days or expiry_close(day) > now:
                continue
            self._expired_days.add(day)
            events += self.expire(day)
        return events

    def expire(self, day: date) -> list[Event]:
        """Expire every option of ``day`` at its close.

        Working orders on those options are cancelled. ITM options (intrinsic
        at least one cent, OCC's auto-exercise threshold) are exercised (long)
        or assigned (short) into QQQ stock at the strike: a short put becomes
        +100 shares per contract, a short call -100; OTM options expire
        worthless. Assignment books the option closed at zero and the stock at
        the strike, without commission.
        """
        self._expired_days.add(day)
        close = expiry_close(day)
        settle = self.market.spot(close - timedelta(seconds=1))
        events: list[Event] = []
        for order in list(self.orders.values()):
            if order.is_live and any(leg.instrument.expiry == day for leg in order.legs):
                events += self._cancel(order, "contract expired")
        for account in self.accounts.values():
            changed = False
            for pos in list(account.open_positions()):
                inst = pos.instrument
                if not inst.is_option or inst.expiry != day:
                    continue
                changed = True
                qty = pos.quantity
                intrinsic = inst.intrinsic(settle)
                account.remove_at(inst, 0.0)
                if intrinsic >= 0.01 - _EPS:
                    shares = qty * inst.multiplier
                    stock_qty = shares if inst.right == "C" else -shares
                    account.apply_fill(STOCK, stock_qty, inst.strike, 0.0)
            if changed:
                events.append(AccountChanged(account.account_id))
        return events

    # -- errors ---------------------------------------------------------------

    def _error(self, account: str, client_id: int, order_id: int, code: int) -> OrderError:
        texts = {
            103: "Duplicate order id",
            200: "No security definition has been found for the request",
        }
        return OrderError(account, client_id, order_id, code, texts.get(code, "Error"))

    def _reject(self, account: str, client_id: int, order_id: int, reason: str) -> OrderError:
        return OrderError(account, client_id, order_id, 201, f"Order rejected - reason:{reason}")
