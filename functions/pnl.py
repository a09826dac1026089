"""pnl_mtm, pnl_rollup_daily, pnl_rollup_monthly (SPEC section 6).

All arithmetic is the domain's (``spreadpilot.domain.pnl``: FIFO realized,
marks, daily and monthly rollups, commission); this module only gathers inputs
(fills from PostgreSQL, marks from the sidecars) and writes outputs through
``PnlRepository``, whose keyed upserts make every job idempotent.

- Mark-to-market takes two marks 30 s apart per invocation (Cloud Scheduler's
  finest cadence is a minute). Snapshot times are aligned to the 30 s grid, so
  a retried invocation writes the same keys and changes nothing.
- The daily rollup finalizes every (follower, date) that has fills or
  snapshots but no finalized row, up to today once the market has closed: a
  missed 16:30 run is caught up by the next one.
- The monthly rollup does every month before the current one that has
  finalized days but no monthly row or commission statement (catch-up again),
  and the statement: pct x P&L when positive, else 0, in the P&L's currency
  unless COMMISSION_FX_RATE says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Protocol

from spreadpilot.adapters.sidecar_client import (
    FollowerPositions,
    SidecarRefused,
    SidecarUnavailable,
)
from spreadpilot.clock import NEW_YORK, Clock, now_new_york
from spreadpilot.domain import calendar
from spreadpilot.domain import pnl as pnl_math
from spreadpilot.domain.followers import Follower
from spreadpilot.storage.fills import FillRow
from spreadpilot.storage.pnl import (
    CommissionStatement,
    DailyPnl,
    IntradaySnapshot,
    MonthlyPnl,
    PnlRepository,
    month_start,
)

log = logging.getLogger(__name__)

MTM_SPACING_SECONDS = 30.0
DAILY_ROLLUP_TIME = time(16, 30)


def contract_key(
    symbol: str,
    sec_type: str,
    right: str | None = None,
    strike: Decimal | float | None = None,
    expiry: date | None = None,
) -> str:
    """The key FIFO and marks share. Descriptive rather than IB's conId, because
    both the stored fills and the sidecar's positions carry these fields."""
    if sec_type.upper() != "OPT":
        return f"{symbol.upper()}|{sec_type.upper()}"
    strike_text = f"{Decimal(str(strike)).normalize():f}" if strike is not None else "?"
    expiry_text = expiry.isoformat() if expiry is not None else "?"
    return f"{symbol.upper()}|OPT|{(right or '?').upper()}|{strike_text}|{expiry_text}"


def to_fill_record(row: FillRow) -> pnl_math.FillRecord:
    return pnl_math.FillRecord(
        exec_id=row.exec_id,
        follower_id=row.follower_id,
        contract_key=contract_key(row.symbol, row.sec_type, row.right, row.strike, row.expiry),
        con_id=row.con_id,
        side=pnl_math.Side(row.side),
        qty=row.qty,
        price=row.price,
        commission=row.commission if row.commission is not None else Decimal(0),
        time=row.exec_time,
        multiplier=row.multiplier or (100 if row.sec_type == "OPT" else 1),
    )


def fill_records(rows: Sequence[FillRow]) -> list[pnl_math.FillRecord]:
    """Leg fills only: a BAG execution's price is the combo's and would count twice."""
    return [to_fill_record(r) for r in rows if r.sec_type.upper() != "BAG"]


class FillSource(Protocol):
    def list_for_follower(
        self,
        follower_id: str,
        trading_date: date | None = None,
        *,
        start: date | None = None,
        end: date | None = None,
    ) -> list[FillRow]: ...

    def list_for_date(self, trading_date: date) -> list[FillRow]: ...


class FollowerSource(Protocol):
    def list_all(self) -> list[Follower]: ...

    def get(self, follower_id: str) -> Follower | None: ...


class MarkSource(Protocol):
    """Current mid marks of a follower's open positions, by ``contract_key``."""

    def marks(self, followers: Sequence[Follower]) -> Mapping[str, Mapping[str, Decimal]]: ...


class PositionsPort(Protocol):
    def all_positions(self) -> list[FollowerPositions]: ...


class SidecarMarks:
    """Marks (leg mids) from each follower's sidecar ``GET /positions``."""

    def __init__(self, sidecar_for: Callable[[str], PositionsPort], default_url: str) -> None:
        self._sidecar_for = sidecar_for
        self._default_url = default_url

    def marks(self, followers: Sequence[Follower]) -> dict[str, dict[str, Decimal]]:
        urls = sorted({f.sidecar_url or self._default_url for f in followers})
        out: dict[str, dict[str, Decimal]] = {}
        for url in urls:
            try:
                everyone = self._sidecar_for(url).all_positions()
            except (SidecarUnavailable, SidecarRefused) as exc:
                # Its followers get no marks; with open lots they are skipped, not guessed.
                log.warning("no marks from %s: %s", url, exc)
                continue
            for positions in everyone:
                if positions.error is not None:
                    continue
                book = out.setdefault(positions.follower_id, {})
                for spread in positions.spreads:
                    for leg in (spread.long, spread.short):
                        if leg.mid is not None:
                            key = contract_key("QQQ", "OPT", leg.right, leg.strike, leg.expiry)
                            book[key] = Decimal(str(leg.mid))
        return out


def align(moment: datetime, seconds: float = MTM_SPACING_SECONDS) -> datetime:
    """Floor ``moment`` to the MTM grid, so a retry writes the same snapshot key."""
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - (epoch % seconds), tz=UTC)


@dataclass
class MtmReport:
    snapshots: int = 0
    duplicates: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    marks_taken: int = 0
    market_closed: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "snapshots": self.snapshots,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "marks_taken": self.marks_taken,
            "market_closed": self.market_closed,
        }


@dataclass
class MarkToMarket:
    followers: FollowerSource
    fills: FillSource
    repo: PnlRepository
    marks: MarkSource
    clock: Clock
    marks_per_run: int = 2
    spacing_seconds: float = MTM_SPACING_SECONDS

    def run(self, *, force: bool = False) -> MtmReport:
        """Take ``marks_per_run`` marks on consecutive slots of the MTM grid (market hours only).

        Mark k is taken at the k-th grid slot after the first mark's, not
        ``spacing_seconds`` after the previous mark *ended*: a mark takes time
        (a sidecar round trip per shard), and sleeping a full spacing after it
        would drift the next snapshot into the slot after, where the next
        invocation's first mark lands, leaving a gap at the slot in between.
        """
        report = MtmReport()
        first_slot: datetime | None = None
        for index in range(self.marks_per_run):
            if index and first_slot is not None:
                due = first_slot + timedelta(seconds=index * self.spacing_seconds)
                self.clock.sleep_blocking(max(0.0, (due - self.clock.now()).total_seconds()))
            now = self.clock.now()
            if first_slot is None:
                first_slot = align(now, self.spacing_seconds)
            if not force and not calendar.is_market_open(now):
                report.market_closed = True
                break
            self.mark_once(now, report)
            report.marks_taken += 1
        return report

    def mark_once(self, now: datetime, report: MtmReport) -> None:
        at = align(now, self.spacing_seconds)
        trading_date = now.astimezone(NEW_YORK).date()
        followers = [f for f in self.followers.list_all()]
        try:
            marks = self.marks.marks(followers)
        except Exception as exc:  # no marks at all: nothing true can be written
            log.warning("no marks this cycle: %s", exc)
            for follower in followers:
                report.skipped[follower.id] = "marks unavailable"
            return
        # One read of the day's fills and one write of every row: two transactions
        # per follower (1,000 followers, every 30 s) were most of the cycle.
        fills_by_follower: dict[str, list[FillRow]] = {}
        for row in self.fills.list_for_date(trading_date):
            fills_by_follower.setdefault(row.follower_id, []).append(row)
        snapshots: list[IntradaySnapshot] = []
        for follower in followers:
            rows = fills_by_follower.get(follower.id, [])
            follower_marks = marks.get(follower.id, {})
            if not rows and not follower_marks:
                continue
            try:
                snap = pnl_math.mark_to_market(fill_records(rows), follower_marks, at)
            except pnl_math.MissingMark as exc:
                # A snapshot without a mark would be a made-up number; skip it.
                report.skipped[follower.id] = str(exc)
                continue
            snapshots.append(
                IntradaySnapshot(
                    follower_id=follower.id,
                    snapshot_time=at,
                    trading_date=trading_date,
                    realized=snap.realized,
                    unrealized=snap.unrealized,
                    total=snap.total,
                    position_count=snap.position_count,
                    market_value=snap.market_value,
                    commissions=snap.commissions,
                )
            )
        written = self.repo.insert_intraday_many(snapshots)
        report.snapshots += written
        report.duplicates += len(snapshots) - written


def _domain_snapshot(row: IntradaySnapshot) -> pnl_math.PnlSnapshot:
    return pnl_math.PnlSnapshot(
        snapshot_time=row.snapshot_time,
        realized=row.realized,
        unrealized=row.unrealized,
        commissions=row.commissions,
        position_count=row.position_count,
        market_value=row.market_value,
    )


def daily_row(
    follower_id: str,
    trading_date: date,
    snapshots: Sequence[IntradaySnapshot],
    fills: Sequence[FillRow],
    close: datetime,
) -> DailyPnl:
    """The finalized ``pnl_daily`` row of one follower's day.

    A closing snapshot is added from the day's fills so that trades after the
    last mark (a liquidation at 15:59) are in the realized figure; positions
    still open at the close keep the unrealized value of the last mark (0DTE
    options expire then; the last mark is the best estimate of their value).
    """
    records = fill_records(fills)
    snaps = [_domain_snapshot(s) for s in snapshots]
    realized = pnl_math.realized_fifo(records)
    last = max(snaps, key=lambda s: s.snapshot_time) if snaps else None
    open_value = last.unrealized if (last is not None and realized.open_lots) else Decimal(0)
    closing = pnl_math.PnlSnapshot(
        snapshot_time=max(close, last.snapshot_time) if last is not None else close,
        realized=realized.realized,
        unrealized=open_value,
        commissions=realized.commissions,
        position_count=len({lot.contract_key for lot in realized.open_lots}),
    )
    if last is None or (last.realized, last.unrealized) != (closing.realized, closing.unrealized):
        snaps.append(closing)
    day = pnl_math.DailyPnl.from_snapshots(
        follower_id, trading_date, snaps, records, finalized=True
    )
    return DailyPnl(
        follower_id=follower_id,
        trading_date=trading_date,
        opening_pnl=day.opening,
        closing_pnl=day.closing,
        realized=day.realized,
        unrealized=day.unrealized,
        total=day.total,
        trades=day.trades,
        volume=day.volume,
        commissions=day.commissions,
        max_drawdown=day.max_drawdown,
        max_profit=day.max_profit,
        finalized=True,
    )


@dataclass
class RollupReport:
    rolled: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"rolled": self.rolled, "deferred": self.deferred}


@dataclass
class DailyRollup:
    fills: FillSource
    repo: PnlRepository
    clock: Clock

    def run(self, *, since: date | None = None) -> RollupReport:
        """Finalize every closed day not yet finalized, oldest first."""
        report = RollupReport()
        now_ny = now_new_york(self.clock)
        for follower_id, day in self.repo.days_to_roll_up(now_ny.date(), since):
            close = _session_close(day)
            if now_ny < close.astimezone(NEW_YORK):
                report.deferred.append(f"{follower_id}:{day.isoformat()}")
                continue
            row = daily_row(
                follower_id,
                day,
                self.repo.intraday_for_day(follower_id, day),
                self.fills.list_for_follower(follower_id, day),
                close,
            )
            self.repo.upsert_daily(row)
            report.rolled.append(f"{follower_id}:{day.isoformat()}")
        return report


def _session_close(day: date) -> datetime:
    """The session close (16:00 or 13:00); a non-session date counts as closed at 16:00."""
    if calendar.is_trading_day(day):
        return calendar.market_close(day)
    return datetime.combine(day, time(16, 0), tzinfo=NEW_YORK)


def _domain_daily(row: DailyPnl) -> pnl_math.DailyPnl:
    return pnl_math.DailyPnl(
        follower_id=row.follower_id,
        trading_date=row.trading_date,
        opening=row.opening_pnl,
        closing=row.closing_pnl,
        realized=row.realized,
        unrealized=row.unrealized,
        total=row.total,
        trades=row.trades,
        volume=row.volume,
        commissions=row.commissions,
        max_drawdown=row.max_drawdown,
        max_profit=row.max_profit,
        finalized=row.finalized,
    )


def monthly_rows(
    follower: Follower | None,
    follower_id: str,
    month: date,
    days: Sequence[DailyPnl],
    fx_rate: Decimal | None = None,
) -> tuple[MonthlyPnl, CommissionStatement]:
    """The month's ``pnl_monthly`` row and its commission statement."""
    finalized = [d for d in days if d.finalized]
    summary = pnl_math.MonthlyPnl.from_days(
        follower_id, month.year, month.month, [_domain_daily(d) for d in finalized]
    )
    monthly = MonthlyPnl(
        follower_id=follower_id,
        month=month_start(month),
        total=summary.total,
        realized=sum((d.realized for d in finalized), Decimal(0)),
        commissions=sum((d.commissions for d in finalized), Decimal(0)),
        trades=sum(d.trades for d in finalized),
        trading_days=summary.trading_days,
        best_day=summary.best_day_pnl if summary.best_day else None,
        worst_day=summary.worst_day_pnl if summary.worst_day else None,
        best_day_date=summary.best_day,
        worst_day_date=summary.worst_day,
        winning_days=summary.winning_days,
        losing_days=summary.losing_days,
    )
    pct = Decimal(repr(follower.commission_pct)) if follower is not None else Decimal(20)
    currency = follower.commission_currency if follower is not None else "USD"
    due = pnl_math.monthly_commission(summary.total, pct, currency, fx_rate)
    statement = CommissionStatement(
        follower_id=follower_id,
        month=month_start(month),
        pnl=summary.total,
        commission_pct=pct,
        commission_amount=due.amount,
        currency=due.currency,
        payable=due.amount > 0,
        pnl_currency=due.pnl_currency,
        fx_rate=due.conversion_rate,
        iban=follower.iban if follower is not None else None,
        email=follower.email if follower is not None else None,
    )
    return monthly, statement


@dataclass
class MonthlyRollup:
    followers: FollowerSource
    repo: PnlRepository
    clock: Clock
    fx_rate: Decimal | None = None

    def run(self) -> RollupReport:
        """Roll up every complete month not yet rolled up (all before the current one)."""
        report = RollupReport()
        current = month_start(now_new_york(self.clock).date())
        for follower_id, month in self.repo.months_to_roll_up(current):
            monthly, statement = monthly_rows(
                self.followers.get(follower_id),
                follower_id,
                month,
                self.repo.daily_for_month(follower_id, month),
                self.fx_rate,
            )
            self.repo.upsert_monthly(monthly)
            if not self.repo.upsert_commission(statement):
                log.info("commission %s %s already sent or paid: kept", follower_id, month)
            report.rolled.append(f"{follower_id}:{month.isoformat()[:7]}")
        return report
