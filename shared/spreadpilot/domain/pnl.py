"""P&L arithmetic (SPEC section 6): FIFO realized, marks, daily and monthly rollups.

Money is Decimal end to end: the monthly figure becomes an invoice, and float
cents drift. Everything here is a pure function of fills, marks and snapshots,
so the rollups are idempotent: the same inputs always give the same rows.

Conventions: prices are per share and the contract multiplier (100 for QQQ
options) is applied here; commissions are positive costs and are expensed when
paid, i.e. realized P&L is net of every commission of the fills so far,
including those of lots still open (so realized + unrealized = what the account
really made).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

ZERO = Decimal(0)
CENT = Decimal("0.01")
OPTION_MULTIPLIER = 100


class Side(StrEnum):
    """Execution side as IB reports it."""

    BOT = "BOT"
    SLD = "SLD"


class FillRecord(BaseModel):
    """One execution of one contract (a combo's legs each have their own).

    ``contract_key`` identifies the contract FIFO runs over (the IB conId as
    text is best). BAG executions must not be passed: only their legs carry
    the prices that add up.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exec_id: str = Field(min_length=1)
    follower_id: str = Field(min_length=1)
    contract_key: str = Field(min_length=1)
    con_id: int | None = None
    side: Side
    qty: Decimal = Field(gt=0)
    price: Decimal = Field(ge=0)
    commission: Decimal = Field(default=ZERO, ge=0)
    time: datetime
    multiplier: int = Field(default=OPTION_MULTIPLIER, ge=1)

    @field_validator("qty", "price", "commission")
    @classmethod
    def _finite(cls, value: Decimal) -> Decimal:
        if not value.is_finite():
            raise ValueError("must be a finite number")
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("fill time must be timezone-aware")
        return value

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side is Side.BOT else -self.qty


@dataclass(frozen=True)
class Lot:
    """An open FIFO lot: ``qty`` signed (negative = short) at ``price`` per share."""

    contract_key: str
    qty: Decimal
    price: Decimal
    multiplier: int = OPTION_MULTIPLIER


@dataclass(frozen=True)
class RealizedResult:
    """Realized P&L of a set of fills and what is left open."""

    realized: Decimal  # gross - commissions
    gross: Decimal
    commissions: Decimal
    trades: int
    volume: Decimal
    open_lots: tuple[Lot, ...]
    realized_by_contract: Mapping[str, Decimal]  # gross, per contract


class MissingMark(ValueError):
    """An open position has no mark: unrealized P&L cannot be computed."""


def realized_fifo(fills: Iterable[FillRecord], opening_lots: Sequence[Lot] = ()) -> RealizedResult:
    """FIFO per contract, long and short openings alike, x multiplier, net of commissions.

    Fills are ordered by (time, exec_id) and de-duplicated by ``exec_id`` (the
    same execution reported twice counts once; two different fills under one
    id is an error). ``opening_lots`` are positions carried in (none for 0DTE).
    """
    unique: dict[str, FillRecord] = {}
    for fill in fills:
        seen = unique.get(fill.exec_id)
        if seen is None:
            unique[fill.exec_id] = fill
        elif seen != fill:
            raise ValueError(f"two different fills share exec_id {fill.exec_id!r}")
    ordered = sorted(unique.values(), key=lambda f: (f.time, f.exec_id))

    books: dict[str, deque[Lot]] = {}
    for lot in opening_lots:
        books.setdefault(lot.contract_key, deque()).append(lot)
    gross_by_contract: dict[str, Decimal] = {}
    for fill in ordered:
        book = books.setdefault(fill.contract_key, deque())
        remaining = fill.signed_qty
        gross = gross_by_contract.get(fill.contract_key, ZERO)
        while remaining and book and (book[0].qty > 0) != (remaining > 0):
            lot = book[0]
            if lot.multiplier != fill.multiplier:
                raise ValueError(f"multiplier changed for contract {fill.contract_key!r}")
            matched = min(abs(remaining), abs(lot.qty))
            direction = 1 if lot.qty > 0 else -1  # a long lot gains when sold higher
            gross += (fill.price - lot.price) * matched * lot.multiplier * direction
            left = lot.qty - matched * direction
            if left:
                book[0] = Lot(lot.contract_key, left, lot.price, lot.multiplier)
            else:
                book.popleft()
            remaining += matched * direction
        if remaining:
            book.append(Lot(fill.contract_key, remaining, fill.price, fill.multiplier))
        gross_by_contract[fill.contract_key] = gross

    gross_total = sum(gross_by_contract.values(), ZERO)
    commissions = sum((f.commission for f in ordered), ZERO)
    return RealizedResult(
        realized=gross_total - commissions,
        gross=gross_total,
        commissions=commissions,
        trades=len(ordered),
        volume=sum((f.qty for f in ordered), ZERO),
        open_lots=tuple(lot for book in books.values() for lot in book),
        realized_by_contract=gross_by_contract,
    )


def unrealized(open_lots: Iterable[Lot], marks: Mapping[str, Decimal]) -> Decimal:
    """Sum of (mark - entry) x signed qty x multiplier; raises MissingMark."""
    total = ZERO
    for lot in open_lots:
        total += (_mark(marks, lot) - lot.price) * lot.qty * lot.multiplier
    return total


def market_value(open_lots: Iterable[Lot], marks: Mapping[str, Decimal]) -> Decimal:
    """Signed value of the open lots at their marks (shorts count negative)."""
    return sum((_mark(marks, lot) * lot.qty * lot.multiplier for lot in open_lots), ZERO)


def _mark(marks: Mapping[str, Decimal], lot: Lot) -> Decimal:
    mark = marks.get(lot.contract_key)
    if mark is None:
        raise MissingMark(f"no mark for open contract {lot.contract_key!r}")
    return Decimal(mark)


@dataclass(frozen=True)
class PnlSnapshot:
    """One mark-to-market row (``pnl_intraday``)."""

    snapshot_time: datetime
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal = ZERO
    position_count: int = 0
    market_value: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def mark_to_market(
    fills: Iterable[FillRecord],
    marks: Mapping[str, Decimal],
    at: datetime,
    opening_lots: Sequence[Lot] = (),
) -> PnlSnapshot:
    """The snapshot for ``at`` from the day's fills and current marks (mids)."""
    result = realized_fifo(fills, opening_lots)
    return PnlSnapshot(
        snapshot_time=at,
        realized=result.realized,
        unrealized=unrealized(result.open_lots, marks),
        commissions=result.commissions,
        position_count=len({lot.contract_key for lot in result.open_lots}),
        market_value=market_value(result.open_lots, marks),
    )


@dataclass(frozen=True)
class DailyPnl:
    """The ``pnl_daily`` row of one follower and date."""

    follower_id: str
    trading_date: date
    opening: Decimal
    closing: Decimal
    realized: Decimal
    unrealized: Decimal
    total: Decimal
    trades: int
    volume: Decimal
    commissions: Decimal
    max_drawdown: Decimal
    max_profit: Decimal
    finalized: bool = False

    @classmethod
    def from_snapshots(
        cls,
        follower_id: str,
        trading_date: date,
        snapshots: Sequence[PnlSnapshot],
        fills: Sequence[FillRecord] = (),
        finalized: bool = False,
    ) -> DailyPnl:
        """Roll the day's snapshots (and fills, for trades/volume) into one row.

        The latest snapshot is the day's result (pass one made by
        ``mark_to_market`` at the close to include late fills). Opening and
        closing are the first and last snapshot totals. The day starts flat, so
        max profit is the highest total (>= 0) and max drawdown the deepest
        fall of the total from its running peak (>= 0). Without snapshots the
        day is its fills' realized P&L (zero when there were none).
        """
        ordered = sorted(snapshots, key=lambda s: s.snapshot_time)
        day_fills = realized_fifo(fills)
        if not ordered:
            ordered = [PnlSnapshot(datetime.min, day_fills.realized, ZERO, day_fills.commissions)]
        peak = ZERO
        drawdown = ZERO
        for snap in ordered:
            peak = max(peak, snap.total)
            drawdown = max(drawdown, peak - snap.total)
        last = ordered[-1]
        return cls(
            follower_id=follower_id,
            trading_date=trading_date,
            opening=ordered[0].total,
            closing=last.total,
            realized=last.realized,
            unrealized=last.unrealized,
            total=last.total,
            trades=day_fills.trades,
            volume=day_fills.volume,
            commissions=day_fills.commissions if fills else last.commissions,
            max_drawdown=drawdown,
            max_profit=peak,
            finalized=finalized,
        )


@dataclass(frozen=True)
class MonthlyPnl:
    """The ``pnl_monthly`` row of one follower and month."""

    follower_id: str
    year: int
    month: int
    total: Decimal
    trading_days: int
    best_day: date | None
    best_day_pnl: Decimal
    worst_day: date | None
    worst_day_pnl: Decimal
    winning_days: int
    losing_days: int

    @classmethod
    def from_days(
        cls, follower_id: str, year: int, month: int, days: Sequence[DailyPnl]
    ) -> MonthlyPnl:
        """Aggregate daily rows; every row must be this follower's and this month's.

        ``trading_days`` counts the days given: pass one row per NYSE session
        of the month (the caller takes them from the calendar).
        """
        by_date: dict[date, DailyPnl] = {}
        for day in days:
            if day.follower_id != follower_id:
                raise ValueError(f"daily row of {day.follower_id!r} in {follower_id!r}'s month")
            if (day.trading_date.year, day.trading_date.month) != (year, month):
                raise ValueError(f"{day.trading_date.isoformat()} is not in {year}-{month:02d}")
            if day.trading_date in by_date:
                raise ValueError(f"two daily rows for {day.trading_date.isoformat()}")
            by_date[day.trading_date] = day
        if not by_date:
            return cls(follower_id, year, month, ZERO, 0, None, ZERO, None, ZERO, 0, 0)
        ordered = sorted(by_date.values(), key=lambda d: d.trading_date)
        best = max(ordered, key=lambda d: d.total)  # earliest on ties
        worst = min(ordered, key=lambda d: d.total)
        return cls(
            follower_id=follower_id,
            year=year,
            month=month,
            total=sum((d.total for d in ordered), ZERO),
            trading_days=len(ordered),
            best_day=best.trading_date,
            best_day_pnl=best.total,
            worst_day=worst.trading_date,
            worst_day_pnl=worst.total,
            winning_days=sum(1 for d in ordered if d.total > 0),
            losing_days=sum(1 for d in ordered if d.total < 0),
        )


@dataclass(frozen=True)
class CommissionDue:
    """What a follower owes for a month, in ``currency``."""

    amount: Decimal
    currency: str
    pnl: Decimal
    pnl_currency: str
    pct: Decimal
    conversion_rate: Decimal | None


def monthly_commission(
    pnl: Decimal,
    pct: Decimal | float,
    currency: str = "USD",
    conversion_rate: Decimal | None = None,
    pnl_currency: str = "USD",
) -> CommissionDue:
    """pct/100 x pnl when pnl > 0, else 0, rounded half-up to the cent.

    ``currency`` is the follower's billing currency. Without a conversion rate
    (units of ``currency`` per 1 ``pnl_currency``) the amount stays in, and is
    labelled with, the P&L's currency: a USD figure is never labelled EUR.
    """
    pct_d = Decimal(repr(pct)) if isinstance(pct, float) else Decimal(pct)
    if not (pct_d.is_finite() and ZERO <= pct_d <= 100):
        raise ValueError(f"commission pct must be within 0..100, got {pct}")
    if not pnl.is_finite():
        raise ValueError(f"monthly P&L must be finite, got {pnl}")
    base = pnl * pct_d / 100 if pnl > 0 else ZERO
    label, rate = pnl_currency, None
    if currency != pnl_currency and conversion_rate is not None:
        if not (conversion_rate.is_finite() and conversion_rate > 0):
            raise ValueError(f"conversion rate must be positive, got {conversion_rate}")
        base, label, rate = base * conversion_rate, currency, conversion_rate
    amount = base.quantize(CENT, rounding=ROUND_HALF_UP)
    return CommissionDue(amount, label, pnl, pnl_currency, pct_d, rate)
