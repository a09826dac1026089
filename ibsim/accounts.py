"""Per-account bookkeeping: cash, positions, average cost, realized P&L, margin.

Conventions follow what IB reports so that client code written against a real
gateway reads the same numbers here:
- ``avg_cost`` is per contract *including the multiplier and commission*
  (a put bought at 1.50 with $0.65 commission has avgCost 150.65; sold short,
  149.35);
- realized P&L is booked when a position is reduced, commissions included;
- the margin requirement of a set of options is the most it can lose by expiry
  beyond its current value (for a credit spread, width x 100 - credit; for a long
  option, its premium; for a naked short, something large), plus Reg-T 50% (25%
  maintenance) of the value of any stock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from .contracts import Instrument

COMMISSION_PER_CONTRACT = 0.65
STOCK_COMMISSION_PER_SHARE = 0.005
STOCK_MIN_COMMISSION = 1.0
STOCK_INIT_RATE = 0.5
STOCK_MAINT_RATE = 0.25


def commission_for(instrument: Instrument, quantity: float) -> float:
    if instrument.is_option:
        return round(COMMISSION_PER_CONTRACT * abs(quantity), 2)
    return round(max(STOCK_MIN_COMMISSION, STOCK_COMMISSION_PER_SHARE * abs(quantity)), 2)


@dataclass
class Position:
    instrument: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0  # per unit, multiplier and commission included
    realized: float = 0.0


@dataclass(frozen=True)
class Holding:
    """A quantity of an instrument valued at ``unit_price`` per share."""

    instrument: Instrument
    quantity: float
    unit_price: float


@dataclass(frozen=True)
class Margin:
    initial: float
    maintenance: float


def margin_requirement(holdings: Iterable[Holding]) -> Margin:
    """Initial and maintenance requirement of a set of holdings (see module doc)."""
    by_expiry: dict[date, list[Holding]] = {}
    stock_value = 0.0
    for holding in holdings:
        if holding.quantity == 0:
            continue
        if holding.instrument.is_option and holding.instrument.expiry is not None:
            by_expiry.setdefault(holding.instrument.expiry, []).append(holding)
        else:
            stock_value += abs(holding.quantity * holding.unit_price)
    options = 0.0
    for group in by_expiry.values():
        options += _option_group_risk(group)
    return Margin(
        initial=round(options + STOCK_INIT_RATE * stock_value, 2),
        maintenance=round(options + STOCK_MAINT_RATE * stock_value, 2),
    )


def _option_group_risk(group: Sequence[Holding]) -> float:
    """Current value minus the worst value at expiry over every underlying price.

    The payoff is piecewise linear with kinks at the strikes, so its minimum is
    at zero, at a strike, or (with net short calls) far above the top strike.
    """
    value = sum(h.quantity * h.unit_price * h.instrument.multiplier for h in group)
    strikes = sorted({h.instrument.strike for h in group})
    candidates = [0.0, *strikes, strikes[-1] * 3 + 100]
    worst = min(
        sum(h.quantity * h.instrument.intrinsic(s) * h.instrument.multiplier for h in group)
        for s in candidates
    )
    return max(0.0, value - worst)


@dataclass
class FillResult:
    """What one execution did to the account."""

    realized: float | None  # None when the fill only opened or added to a position
    position: Position


@dataclass
class Account:
    """One IB account. All amounts in USD."""

    account_id: str
    cash: float
    positions: dict[int, Position] = field(default_factory=dict)
    realized_pnl: float = 0.0
    commissions: float = 0.0
    starting_equity: float = 0.0

    def __post_init__(self) -> None:
        if not self.starting_equity:
            self.starting_equity = self.cash

    def position(self, instrument: Instrument) -> Position:
        pos = self.positions.get(instrument.con_id)
        if pos is None:
            pos = Position(instrument)
            self.positions[instrument.con_id] = pos
        return pos

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.quantity != 0]

    def apply_fill(
        self, instrument: Instrument, quantity: float, price: float, commission: float
    ) -> FillResult:
        """Book a fill of signed ``quantity`` (positive = bought) at ``price`` per share."""
        mult = instrument.multiplier
        self.cash -= quantity * price * mult + commission
        self.commissions += commission
        pos = self.position(instrument)
        old = pos.quantity
        realized: float | None = None
        if old == 0 or (old > 0) == (quantity > 0):
            total = old * pos.avg_cost + quantity * price * mult + commission
            pos.quantity = old + quantity
            pos.avg_cost = total / pos.quantity
        else:
            closed = min(abs(old), abs(quantity))
            share = commission * closed / abs(quantity)
            if old > 0:
                realized = closed * (price * mult - pos.avg_cost) - share
            else:
                realized = closed * (pos.avg_cost - price * mult) - share
            remaining = old + quantity
            if remaining == 0:
                pos.quantity = 0.0
                pos.avg_cost = 0.0
            elif (remaining > 0) == (old > 0):
                pos.quantity = remaining
            else:
                opened = abs(remaining)
                pos.quantity = remaining
                pos.avg_cost = (opened * price * mult + (commission - share)) / opened
            realized = round(realized, 2)
            pos.realized += realized
            self.realized_pnl += realized
        return FillResult(realized, pos)

    def remove_at(self, instrument: Instrument, price: float) -> float:
        """Close a position at ``price`` without commission (expiry); returns realized."""
        pos = self.positions.get(instrument.con_id)
        if pos is None or pos.quantity == 0:
            return 0.0
        mult = instrument.multiplier
        qty = pos.quantity
        self.cash += qty * price * mult
        realized = round(qty * price * mult - qty * pos.avg_cost, 2)
        pos.realized += realized
        self.realized_pnl += realized
        pos.quantity = 0.0
        pos.avg_cost = 0.0
        return realized

    def holdings(self, marks: dict[int, float]) -> list[Holding]:
        return [
            Holding(p.instrument, p.quantity, marks.get(p.instrument.con_id, 0.0))
            for p in self.open_positions()
        ]


@dataclass(frozen=True)
class AccountSnapshot:
    """Every figure the account messages report, computed at one instant."""

    account_id: str
    cash: float
    net_liquidation: float
    option_value: float
    stock_value: float
    gross_position_value: float
    unrealized_pnl: float
    realized_pnl: float
    init_margin: float
    maint_margin: float

    @property
    def equity_with_loan(self) -> float:
        return self.net_liquidation

    @property
    def available_funds(self) -> float:
        return self.equity_with_loan - self.init_margin

    @property
    def excess_liquidity(self) -> float:
        return self.equity_with_loan - self.maint_margin

    @property
    def buying_power(self) -> float:
        return max(0.0, self.available_funds) * 4

    @property
    def cushion(self) -> float:
        if self.net_liquidation <= 0:
            return 0.0
        return self.excess_liquidity / self.net_liquidation

    def values(self) -> list[tuple[str, str, str]]:
        """``(tag, value, currency)`` for account updates and the account summary."""
        money = {
            "NetLiquidation": self.net_liquidation,
            "TotalCashValue": self.cash,
            "SettledCash": self.cash,
            "CashBalance": self.cash,
            "AccruedCash": 0.0,
            "EquityWithLoanValue": self.equity_with_loan,
            "PreviousDayEquityWithLoanValue": self.equity_with_loan,
            "GrossPositionValue": self.gross_position_value,
            "RegTEquity": self.equity_with_loan,
            "RegTMargin": self.init_margin,
            "SMA": max(0.0, self.available_funds),
            "InitMarginReq": self.init_margin,
            "MaintMarginReq": self.maint_margin,
            "AvailableFunds": self.available_funds,
            "ExcessLiquidity": self.excess_liquidity,
            "BuyingPower": self.buying_power,
            "FullInitMarginReq": self.init_margin,
            "FullMaintMarginReq": self.maint_margin,
            "FullAvailableFunds": self.available_funds,
            "FullExcessLiquidity": self.excess_liquidity,
            "LookAheadInitMarginReq": self.init_margin,
            "LookAheadMaintMarginReq": self.maint_margin,
            "LookAheadAvailableFunds": self.available_funds,
            "LookAheadExcessLiquidity": self.excess_liquidity,
            "OptionMarketValue": self.option_value,
            "StockMarketValue": self.stock_value,
            "UnrealizedPnL": self.unrealized_pnl,
            "RealizedPnL": self.realized_pnl,
        }
        out: list[tuple[str, str, str]] = [
            ("AccountCode", self.account_id, ""),
            ("AccountType", "INDIVIDUAL", ""),
            ("Currency", "USD", "USD"),
            ("Cushion", f"{self.cushion:.4f}", ""),
            ("DayTradesRemaining", "-1", ""),
            ("HighestSeverity", "0", ""),
            ("LookAheadNextChange", "0", ""),
        ]
        out += [(tag, f"{value:.2f}", "USD") for tag, value in money.items()]
        return out


def snapshot(account: Account, marks: dict[int, float]) -> AccountSnapshot:
    """Value ``account`` with ``marks`` (per-share mid of each held contract)."""
    option_value = 0.0
    stock_value = 0.0
    gross = 0.0
    unrealized = 0.0
    for pos in account.open_positions():
        mark = marks.get(pos.instrument.con_id, 0.0)
        value = pos.quantity * mark * pos.instrument.multiplier
        if pos.instrument.is_option:
            option_value += value
        else:
            stock_value += value
        gross += abs(value)
        unrealized += value - pos.quantity * pos.avg_cost
    margin = margin_requirement(account.holdings(marks))
    return AccountSnapshot(
        account_id=account.account_id,
        cash=round(account.cash, 2),
        net_liquidation=round(account.cash + option_value + stock_value, 2),
        option_value=round(option_value, 2),
        stock_value=round(stock_value, 2),
        gross_position_value=round(gross, 2),
        unrealized_pnl=round(unrealized, 2),
        realized_pnl=round(account.realized_pnl, 2),
        init_margin=margin.initial,
        maint_margin=margin.maintenance,
    )
