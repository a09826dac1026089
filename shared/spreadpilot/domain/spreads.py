"""Vertical spreads and IB's combo price convention (SPEC section 3, steps 3 and 5).

The sign of a combo price is the classic way to lose money with IB: a combo's
price is sum(BUY legs) - sum(SELL legs), so receiving a credit is a NEGATIVE
price, and a BUY combo order at limit L fills at any combo price <= L. Sending
+0.80 instead of -0.80 would pay a debit of up to $0.80 for a spread that
should pay us. Every conversion lives here, once, and the guard fails closed.
All arithmetic goes through Decimal so that 0.85 - 0.01 * 3 is 0.82, not
0.8199999999999998.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from spreadpilot.domain.signals import Signal, Strategy

TICK = 0.01


class Right(StrEnum):
    """Option right, spelt as IB spells it."""

    PUT = "P"
    CALL = "C"


class Action(StrEnum):
    """Order or leg action, spelt as IB spells it."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Action:
        return Action.SELL if self is Action.BUY else Action.BUY


class CreditGuardError(ValueError):
    """A price that would turn a credit spread into a debit: never sent."""


class InvalidQuote(ValueError):
    """A quote that cannot be priced from (crossed, negative, NaN)."""


@dataclass(frozen=True)
class OptionLeg:
    """One leg of a combo, per unit of the combo (ratio 1)."""

    right: Right
    strike: float
    action: Action
    expiry: date
    symbol: str = "QQQ"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"leg strike must be positive, got {self.strike}")


@dataclass(frozen=True)
class VerticalSpread:
    """A one-by-one vertical: BUY the long (protective) leg, SELL the short leg.

    The combo is always defined with this leg order and actions. Opening a
    credit spread is a BUY of that combo at a negative limit; closing it is a
    SELL of the same combo (see ``closing_action``), so the sidecar never has
    to construct a mirrored leg list.
    """

    long_leg: OptionLeg
    short_leg: OptionLeg

    def __post_init__(self) -> None:
        if self.long_leg.action is not Action.BUY or self.short_leg.action is not Action.SELL:
            raise ValueError("a vertical spread BUYs its long leg and SELLs its short leg")
        if self.long_leg.right is not self.short_leg.right:
            raise ValueError("both legs of a vertical spread have the same right")
        if self.long_leg.expiry != self.short_leg.expiry:
            raise ValueError("both legs of a vertical spread have the same expiry")
        if self.long_leg.symbol != self.short_leg.symbol:
            raise ValueError("both legs of a vertical spread have the same underlying")
        if self.long_leg.strike == self.short_leg.strike:
            raise ValueError("a vertical spread needs two different strikes")

    @classmethod
    def of(
        cls, right: Right, strike_long: float, strike_short: float, expiry: date
    ) -> VerticalSpread:
        return cls(
            OptionLeg(right, strike_long, Action.BUY, expiry),
            OptionLeg(right, strike_short, Action.SELL, expiry),
        )

    @classmethod
    def from_signal(cls, signal: Signal) -> VerticalSpread:
        right = Right.PUT if signal.strategy is Strategy.BULL_PUT else Right.CALL
        return cls.of(right, signal.strike_long, signal.strike_short, signal.expiry)

    @property
    def right(self) -> Right:
        return self.long_leg.right

    @property
    def expiry(self) -> date:
        return self.long_leg.expiry

    @property
    def width(self) -> float:
        return float(abs(_d(self.short_leg.strike) - _d(self.long_leg.strike)))

    @property
    def legs(self) -> tuple[OptionLeg, OptionLeg]:
        """Combo legs in the order the order is built: long (BUY), short (SELL)."""
        return (self.long_leg, self.short_leg)

    @property
    def is_credit(self) -> bool:
        """True when the sold leg is the more valuable one (we receive money)."""
        if self.right is Right.PUT:
            return self.short_leg.strike > self.long_leg.strike
        return self.short_leg.strike < self.long_leg.strike

    @property
    def strategy(self) -> Strategy | None:
        """The strategy this spread is, or None for a debit spread."""
        if not self.is_credit:
            return None
        return Strategy.BULL_PUT if self.right is Right.PUT else Strategy.BEAR_CALL


def opening_action() -> Action:
    """Opening a credit spread BUYs the combo (at a negative limit)."""
    return Action.BUY


def closing_action(opening: Action = Action.BUY) -> Action:
    """The combo action that closes a position opened with ``opening``.

    We close a credit spread by SELLing the same BUY-long/SELL-short combo: that
    sells the long leg and buys back the short leg in one order (a combo MKT
    order for liquidation), so the hedge is never removed before the short.
    """
    return opening.opposite


def round_to_tick(x: float, tick: float = TICK) -> float:
    """Round to the nearest tick, half away from zero, without float drift."""
    if not math.isfinite(x):
        raise ValueError(f"cannot round non-finite price {x}")
    if not (math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be positive, got {tick}")
    step = _d(tick)
    ticks = (_d(x) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(ticks * step)


def assert_credit_limit(limit: float) -> float:
    """Fail closed: a credit spread's BUY limit must be strictly negative.

    Zero is refused too: a limit of 0.00 asks for no credit, which is never a
    legitimate rung (MIN_PRICE is far above it) and most likely a bug.
    Returns ``limit`` so it can be used inline.
    """
    if not math.isfinite(limit) or limit >= 0:
        raise CreditGuardError(
            f"refusing combo limit {limit}: a credit spread is a BUY at a NEGATIVE price"
        )
    return limit


def combo_limit_for_credit(credit: float) -> float:
    """The BUY combo limit that receives at least ``credit``: $0.80 -> -0.80."""
    if not math.isfinite(credit) or credit <= 0:
        raise CreditGuardError(f"a credit must be positive, got {credit}")
    return assert_credit_limit(-round_to_tick(credit))


def credit_for_combo_price(price: float) -> float:
    """The credit received for a BUY combo filled at ``price``: -0.80 -> 0.80."""
    if not math.isfinite(price):
        raise ValueError(f"combo price must be finite, got {price}")
    return float(-_d(price))


def mid_credit(short_bid: float, short_ask: float, long_bid: float, long_ask: float) -> float:
    """Credit at the legs' mids: short.mid - long.mid (may be negative)."""
    _check_quote("short", short_bid, short_ask)
    _check_quote("long", long_bid, long_ask)
    short_mid = (_d(short_bid) + _d(short_ask)) / 2
    long_mid = (_d(long_bid) + _d(long_ask)) / 2
    return float(short_mid - long_mid)


def natural_credit(short_bid: float, short_ask: float, long_bid: float, long_ask: float) -> float:
    """Credit crossing both spreads: short.bid - long.ask (what a market order gets)."""
    _check_quote("short", short_bid, short_ask)
    _check_quote("long", long_bid, long_ask)
    return float(_d(short_bid) - _d(long_ask))


def leg_mid(bid: float, ask: float) -> float:
    """Mid of one option's quote, checked like the spread quotes."""
    _check_quote("option", bid, ask)
    return float((_d(bid) + _d(ask)) / 2)


def _check_quote(name: str, bid: float, ask: float) -> None:
    if not (math.isfinite(bid) and math.isfinite(ask)):
        raise InvalidQuote(f"{name} leg quote is missing (bid {bid}, ask {ask})")
    if bid < 0 or ask < 0:
        raise InvalidQuote(f"{name} leg quote is negative (bid {bid}, ask {ask})")
    if bid > ask:
        raise InvalidQuote(f"{name} leg quote is crossed (bid {bid} > ask {ask})")


def _d(x: float) -> Decimal:
    """Float to Decimal through its shortest repr: 0.1 -> Decimal('0.1')."""
    return Decimal(repr(float(x)))
