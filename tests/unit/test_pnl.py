"""P&L arithmetic (SPEC section 6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from spreadpilot.domain.pnl import (
    DailyPnl,
    FillRecord,
    Lot,
    MissingMark,
    MonthlyPnl,
    PnlSnapshot,
    Side,
    mark_to_market,
    market_value,
    monthly_commission,
    realized_fifo,
    unrealized,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
DAY = date(2026, 3, 2)


def fill(
    exec_id: str,
    side: Side,
    qty: int | str,
    price: str,
    commission: str = "0",
    minutes: int = 0,
    key: str = "QQQ-450P",
) -> FillRecord:
    return FillRecord(
        exec_id=exec_id,
        follower_id="f1",
        contract_key=key,
        side=side,
        qty=D(qty),
        price=D(price),
        commission=D(commission),
        time=T0 + timedelta(minutes=minutes),
    )


def test_credit_spread_round_trip() -> None:
    # Open a 450/445 bull put for 0.80 credit x 10, close it for 0.20 debit.
    fills = [
        fill("1", Side.SLD, 10, "1.95", "6.50", 0, "P450"),
        fill("2", Side.BOT, 10, "1.15", "6.50", 0, "P445"),
        fill("3", Side.BOT, 10, "0.30", "6.50", 60, "P450"),
        fill("4", Side.SLD, 10, "0.10", "6.50", 60, "P445"),
    ]
    result = realized_fifo(fills)
    # short leg +1.65 x 1000, long leg -1.05 x 1000 = +600 gross, 26 commissions
    assert result.gross == D("600.00")
    assert result.commissions == D("26.00")
    assert result.realized == D("574.00")
    assert result.open_lots == ()
    assert result.trades == 4 and result.volume == D(40)
    assert result.realized_by_contract == {"P450": D("1650.00"), "P445": D("-1050.00")}


def test_fifo_order_and_partial_lots() -> None:
    fills = [
        fill("a", Side.BOT, 2, "1.00", minutes=0),
        fill("b", Side.BOT, 2, "2.00", minutes=1),
        fill("c", Side.SLD, 3, "3.00", minutes=2),
    ]
    result = realized_fifo(fills)
    # first lot 2 @1.00 -> +400, then 1 of the 2.00 lot -> +100
    assert result.gross == D("500.00")
    assert result.open_lots == (Lot("QQQ-450P", D(1), D("2.00")),)


def test_position_flip_opens_the_other_side() -> None:
    result = realized_fifo(
        [fill("a", Side.BOT, 1, "1.00"), fill("b", Side.SLD, 3, "1.50", minutes=1)]
    )
    assert result.gross == D("50.00")
    assert result.open_lots == (Lot("QQQ-450P", D(-2), D("1.50")),)


def test_fills_are_ordered_by_time_and_deduplicated() -> None:
    close = fill("b", Side.SLD, 1, "1.50", minutes=5)
    open_ = fill("a", Side.BOT, 1, "1.00", minutes=0)
    result = realized_fifo([close, open_, close])
    assert result.gross == D("50.00") and result.trades == 2
    conflicting = fill("b", Side.SLD, 1, "9.99", minutes=5)
    with pytest.raises(ValueError, match="exec_id"):
        realized_fifo([close, conflicting])


def test_opening_lots_are_closed_first() -> None:
    carried = [Lot("QQQ-450P", D(-1), D("2.00"))]
    result = realized_fifo([fill("a", Side.BOT, 1, "0.50")], opening_lots=carried)
    assert result.gross == D("150.00") and result.open_lots == ()


def test_unrealized_and_market_value() -> None:
    lots = [Lot("P450", D(-10), D("1.95")), Lot("P445", D(10), D("1.15"))]
    marks = {"P450": D("1.50"), "P445": D("0.90")}
    # short gains 0.45 x 1000, long loses 0.25 x 1000
    assert unrealized(lots, marks) == D("200.00")
    assert market_value(lots, marks) == D("-600.00")
    with pytest.raises(MissingMark):
        unrealized(lots, {"P450": D("1.50")})


def test_mark_to_market_snapshot() -> None:
    fills = [
        fill("1", Side.SLD, 1, "1.95", "1.00", 0, "P450"),
        fill("2", Side.BOT, 1, "1.15", "1.00", 0, "P445"),
    ]
    snap = mark_to_market(fills, {"P450": D("1.50"), "P445": D("0.90")}, T0)
    assert snap.realized == D("-2.00")
    assert snap.unrealized == D("20.00")
    assert snap.total == D("18.00")
    assert snap.position_count == 2 and snap.commissions == D("2.00")


def test_fill_record_validation() -> None:
    with pytest.raises(ValidationError):
        fill("x", Side.BOT, 0, "1.0")
    with pytest.raises(ValidationError):
        fill("x", Side.BOT, 1, "-1.0")
    with pytest.raises(ValidationError):
        FillRecord(
            exec_id="x", follower_id="f", contract_key="k", side=Side.BOT, qty=D(1),
            price=D(1), time=datetime(2026, 3, 2, 10, 0),
        )  # fmt: skip
    with pytest.raises(ValidationError):
        fill("x", Side.BOT, 1, "NaN")


def snap(minutes: int, total: str) -> PnlSnapshot:
    return PnlSnapshot(T0 + timedelta(minutes=minutes), D(0), D(total))


def test_daily_rollup_from_snapshots() -> None:
    snaps = [snap(0, "10"), snap(1, "120"), snap(2, "-30"), snap(3, "50"), snap(4, "80")]
    fills = [fill("1", Side.SLD, 1, "1.95", "1.00"), fill("2", Side.BOT, 1, "1.15", "1.00")]
    daily = DailyPnl.from_snapshots("f1", DAY, list(reversed(snaps)), fills, finalized=True)
    assert (daily.opening, daily.closing, daily.total) == (D(10), D(80), D(80))
    assert daily.max_profit == D(120)
    assert daily.max_drawdown == D(150)  # from +120 down to -30
    assert daily.trades == 2 and daily.volume == D(2) and daily.commissions == D("2.00")
    assert daily.finalized


def test_losing_day_drawdown_starts_from_flat() -> None:
    daily = DailyPnl.from_snapshots("f1", DAY, [snap(0, "-40"), snap(1, "-10")])
    assert daily.max_drawdown == D(40) and daily.max_profit == D(0)


def test_day_without_snapshots_uses_its_fills() -> None:
    fills = [fill("a", Side.BOT, 1, "1.00"), fill("b", Side.SLD, 1, "1.50", "1.00", minutes=1)]
    daily = DailyPnl.from_snapshots("f1", DAY, [], fills)
    assert daily.realized == daily.total == daily.closing == D("49.00")


@given(st.lists(st.decimals(min_value=0, max_value=50, places=2), max_size=10))
def test_a_day_with_no_trades_has_zero_pnl(marks: list[D]) -> None:
    snaps = [
        mark_to_market([], {"P450": m}, T0 + timedelta(seconds=30 * i)) for i, m in enumerate(marks)
    ]
    daily = DailyPnl.from_snapshots("f1", DAY, snaps, [])
    for value in (daily.opening, daily.closing, daily.realized, daily.unrealized, daily.total):
        assert value == 0
    assert daily.max_drawdown == daily.max_profit == 0
    assert daily.trades == 0 and daily.commissions == 0


@given(
    open_side=st.sampled_from(list(Side)),
    qty=st.integers(min_value=1, max_value=100),
    p_open=st.decimals(min_value=0, max_value=100, places=2),
    p_close=st.decimals(min_value=0, max_value=100, places=2),
    c_open=st.decimals(min_value=0, max_value=50, places=2),
    c_close=st.decimals(min_value=0, max_value=50, places=2),
)
def test_round_trip_realized_equals_price_difference(
    open_side: Side, qty: int, p_open: D, p_close: D, c_open: D, c_close: D
) -> None:
    close_side = Side.SLD if open_side is Side.BOT else Side.BOT
    fills = [
        fill("o", open_side, qty, str(p_open), str(c_open), 0),
        fill("c", close_side, qty, str(p_close), str(c_close), 1),
    ]
    result = realized_fifo(fills)
    direction = 1 if open_side is Side.BOT else -1
    assert result.realized == (p_close - p_open) * 100 * qty * direction - c_open - c_close
    assert result.open_lots == ()


def daily(day: int, total: str, follower: str = "f1") -> DailyPnl:
    t = D(total)
    return DailyPnl(follower, date(2026, 3, day), t, t, t, D(0), t, 0, D(0), D(0), D(0), D(0))


def test_monthly_rollup() -> None:
    month = MonthlyPnl.from_days(
        "f1", 2026, 3, [daily(2, "100"), daily(3, "-40"), daily(4, "0"), daily(5, "250")]
    )
    assert month.total == D(310) and month.trading_days == 4
    assert (month.best_day, month.best_day_pnl) == (date(2026, 3, 5), D(250))
    assert (month.worst_day, month.worst_day_pnl) == (date(2026, 3, 3), D(-40))
    assert (month.winning_days, month.losing_days) == (2, 1)
    empty = MonthlyPnl.from_days("f1", 2026, 3, [])
    assert empty.total == 0 and empty.best_day is None and empty.trading_days == 0


def test_monthly_rollup_rejects_foreign_rows() -> None:
    with pytest.raises(ValueError):
        MonthlyPnl.from_days("f1", 2026, 3, [daily(2, "1", follower="f2")])
    with pytest.raises(ValueError):
        MonthlyPnl.from_days("f1", 2026, 4, [daily(2, "1")])
    with pytest.raises(ValueError):
        MonthlyPnl.from_days("f1", 2026, 3, [daily(2, "1"), daily(2, "2")])


def test_monthly_commission() -> None:
    due = monthly_commission(D("1234.56"), 20)
    assert due.amount == D("246.91") and due.currency == "USD"
    assert monthly_commission(D("-500"), 20).amount == D("0.00")
    assert monthly_commission(D("0"), 20).amount == D("0.00")


def test_commission_is_never_labelled_eur_without_a_rate() -> None:
    due = monthly_commission(D("1000"), 20, currency="EUR")
    assert due.currency == "USD" and due.amount == D("200.00")
    converted = monthly_commission(D("1000"), 20, currency="EUR", conversion_rate=D("0.92"))
    assert converted.currency == "EUR" and converted.amount == D("184.00")
    assert converted.conversion_rate == D("0.92")
    same = monthly_commission(D("1000"), 20, currency="USD", conversion_rate=D("0.92"))
    assert same.currency == "USD" and same.amount == D("200.00")


def test_commission_input_validation() -> None:
    with pytest.raises(ValueError):
        monthly_commission(D("1000"), 101)
    with pytest.raises(ValueError):
        monthly_commission(D("1000"), 20, currency="EUR", conversion_rate=D(0))
    with pytest.raises(ValueError):
        monthly_commission(D("NaN"), 20)


@given(
    pnl=st.decimals(min_value=-(10**6), max_value=10**6, places=2),
    pct=st.decimals(min_value=0, max_value=100, places=1),
)
def test_commission_is_zero_or_a_share_of_profit(pnl: D, pct: D) -> None:
    due = monthly_commission(pnl, pct)
    assert due.amount >= 0
    if pnl <= 0:
        assert due.amount == 0
    else:
        assert due.amount <= pnl
