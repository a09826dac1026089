"""Time-value risk and position grouping (SPEC section 4).

A short 0DTE option whose time value has melted away is about to be exercised
or assigned: its price is almost all intrinsic, so there is nothing left to
earn and everything to lose. Status is a pure function of the figures; the
monitor decides what to do with it. Position grouping turns the broker's flat
position list into spreads (liquidated as one combo) and *findings*: the
shapes that only arise from an assignment or a legged fill and need a person.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum

from spreadpilot.domain.alerts import AlertType
from spreadpilot.domain.spreads import Right, VerticalSpread

# Comparisons against thresholds ignore float noise below this many decimals.
_TV_DECIMALS = 6


class TvStatus(StrEnum):
    SAFE = "SAFE"
    RISK = "RISK"
    CRITICAL = "CRITICAL"

    @property
    def alert_type(self) -> AlertType:
        return {
            TvStatus.SAFE: AlertType.TV_SAFE,
            TvStatus.RISK: AlertType.TV_RISK,
            TvStatus.CRITICAL: AlertType.TV_CRITICAL,
        }[self]


def intrinsic(right: Right, strike: float, underlying: float) -> float:
    """max(0, S - K) for a call, max(0, K - S) for a put, per share."""
    _finite(strike=strike, underlying=underlying)
    s, k = _d(underlying), _d(strike)
    value = s - k if right is Right.CALL else k - s
    return float(max(Decimal(0), value))


def time_value(option_mid: float, right: Right, strike: float, underlying: float) -> float:
    """Option mid minus intrinsic value, per share (negative if mispriced)."""
    _finite(option_mid=option_mid)
    return float(_d(option_mid) - _d(intrinsic(right, strike, underlying)))


def classify(tv: float, critical: float = 0.10, risk: float = 1.00) -> TvStatus:
    """CRITICAL if tv <= critical, RISK if tv <= risk, else SAFE.

    A non-finite TV (no quote) raises instead of guessing: calling it CRITICAL
    would liquidate at market on missing data, calling it SAFE would hide risk.
    """
    _finite(tv=tv, critical=critical, risk=risk)
    if critical > risk:
        raise ValueError(f"TV_CRITICAL {critical} must not exceed TV_RISK {risk}")
    value = round(tv, _TV_DECIMALS)
    if value <= round(critical, _TV_DECIMALS):
        return TvStatus.CRITICAL
    if value <= round(risk, _TV_DECIMALS):
        return TvStatus.RISK
    return TvStatus.SAFE


def spread_status(short_leg_tv: float, critical: float = 0.10, risk: float = 1.00) -> TvStatus:
    """A spread's status is its short leg's: the short is what gets assigned."""
    return classify(short_leg_tv, critical, risk)


# ---------------------------------------------------------------------------
# Grouping positions


@dataclass(frozen=True)
class Position:
    """One broker position, reduced to what grouping needs.

    ``qty`` is signed (negative = short). ``key`` identifies the contract for
    the caller (IB conId as text, or a local symbol). Options carry right,
    strike and expiry; stock carries none.
    """

    key: str
    symbol: str
    sec_type: str  # "OPT" or "STK" (others are ignored)
    qty: int
    right: Right | None = None
    strike: float | None = None
    expiry: date | None = None

    @classmethod
    def option(
        cls, key: str, right: Right, strike: float, expiry: date, qty: int, symbol: str = "QQQ"
    ) -> Position:
        return cls(key, symbol, "OPT", qty, right, strike, expiry)

    @classmethod
    def stock(cls, key: str, qty: int, symbol: str = "QQQ") -> Position:
        return cls(key, symbol, "STK", qty)


@dataclass(frozen=True)
class PositionSpread:
    """A long and a short option of the same expiry and right, ``qty`` units each."""

    long: Position
    short: Position
    qty: int

    @property
    def vertical(self) -> VerticalSpread:
        """The combo to trade; close it with ``closing_action()`` (SELL), ``qty`` units."""
        assert self.long.right is not None and self.long.expiry is not None
        assert self.long.strike is not None and self.short.strike is not None
        return VerticalSpread.of(
            self.long.right, self.long.strike, self.short.strike, self.long.expiry
        )


class FindingKind(StrEnum):
    SHORT_LEG_MISSING = "SHORT_LEG_MISSING"  # long held, its short gone: assignment
    STOCK_POSITION = "STOCK_POSITION"  # QQQ shares: an assignment or exercise
    NAKED_SHORT = "NAKED_SHORT"  # short without its long: a legged position

    @property
    def alert_type(self) -> AlertType:
        if self is FindingKind.NAKED_SHORT:
            return AlertType.LEGGED_POSITION
        return AlertType.ASSIGNMENT_DETECTED


@dataclass(frozen=True)
class OrphanFinding:
    """A position (or the unpaired part of one) that is not half of a spread."""

    kind: FindingKind
    position: Position

    @property
    def alert_type(self) -> AlertType:
        return self.kind.alert_type


def group_spreads(
    positions: Iterable[Position], symbol: str = "QQQ"
) -> tuple[list[PositionSpread], list[OrphanFinding]]:
    """Pair ``symbol`` options into vertical spreads; everything else is a finding.

    Within each (expiry, right), shorts are taken in strike order and each is
    paired with a long on its protective side if there is one (the credit
    spreads we open), else any long; nearest strike first, ties the lower. Equal quantities
    pair whole; unequal ones pair the smaller quantity and leave the rest as an
    orphan (e.g. -10 short with +4 long = a 4-lot spread and 6 naked shorts),
    so a liquidation closes what is hedged and a person sees exactly what is
    not. Positions in other symbols, other security types and zero quantities
    are ignored. Any stock position in ``symbol`` is a STOCK_POSITION finding.
    """
    spreads: list[PositionSpread] = []
    orphans: list[OrphanFinding] = []
    groups: dict[tuple[date, Right], list[Position]] = defaultdict(list)
    for pos in positions:
        if pos.symbol != symbol or pos.qty == 0:
            continue
        if pos.sec_type == "STK":
            orphans.append(OrphanFinding(FindingKind.STOCK_POSITION, pos))
        elif pos.sec_type == "OPT":
            if pos.right is None or pos.strike is None or pos.expiry is None:
                raise ValueError(f"option position {pos.key} lacks right, strike or expiry")
            groups[(pos.expiry, pos.right)].append(pos)

    for _group, members in sorted(groups.items()):
        longs = sorted((p for p in members if p.qty > 0), key=_strike)
        shorts = sorted((p for p in members if p.qty < 0), key=_strike)
        remaining = {id(p): abs(p.qty) for p in longs + shorts}
        for short in shorts:
            while remaining[id(short)] > 0:
                free = [p for p in longs if remaining[id(p)] > 0]
                if not free:
                    break
                best = min(free, key=lambda p: _pairing_preference(short, p))
                qty = min(remaining[id(short)], remaining[id(best)])
                spreads.append(
                    PositionSpread(replace(best, qty=qty), replace(short, qty=-qty), qty)
                )
                remaining[id(short)] -= qty
                remaining[id(best)] -= qty
        for pos in longs:
            if remaining[id(pos)] > 0:
                left = replace(pos, qty=remaining[id(pos)])
                orphans.append(OrphanFinding(FindingKind.SHORT_LEG_MISSING, left))
        for pos in shorts:
            if remaining[id(pos)] > 0:
                left = replace(pos, qty=-remaining[id(pos)])
                orphans.append(OrphanFinding(FindingKind.NAKED_SHORT, left))
    return spreads, orphans


def _pairing_preference(short: Position, long: Position) -> tuple[bool, float, float]:
    """Prefer a long on the protective side (credit spread), then the nearest strike."""
    k_short, k_long = _strike(short), _strike(long)
    protective = k_long < k_short if short.right is Right.PUT else k_long > k_short
    return (not protective, abs(k_long - k_short), k_long)


def _strike(pos: Position) -> float:
    assert pos.strike is not None
    return pos.strike


def _finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))
