"""Combo price convention and spread shapes (SPEC section 3)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spreadpilot.domain.signals import Signal, Strategy
from spreadpilot.domain.spreads import (
    Action,
    CreditGuardError,
    InvalidQuote,
    OptionLeg,
    Right,
    VerticalSpread,
    assert_credit_limit,
    closing_action,
    combo_limit_for_credit,
    credit_for_combo_price,
    leg_mid,
    mid_credit,
    natural_credit,
    opening_action,
    round_to_tick,
)

DAY = date(2026, 3, 2)


def signal(strategy: Strategy, long_: float, short: float) -> Signal:
    return Signal(
        signal_id="s",
        trading_date=DAY,
        strategy=strategy,
        qty_per_leg=1,
        strike_long=long_,
        strike_short=short,
        expiry=DAY,
        source="manual",
    )


def test_bull_put_from_signal() -> None:
    spread = VerticalSpread.from_signal(signal(Strategy.BULL_PUT, 445, 450))
    assert spread.long_leg == OptionLeg(Right.PUT, 445, Action.BUY, DAY)
    assert spread.short_leg == OptionLeg(Right.PUT, 450, Action.SELL, DAY)
    assert spread.width == 5.0
    assert spread.legs == (spread.long_leg, spread.short_leg)
    assert spread.is_credit and spread.strategy is Strategy.BULL_PUT
    assert spread.right is Right.PUT and spread.expiry == DAY


def test_bear_call_from_signal() -> None:
    spread = VerticalSpread.from_signal(signal(Strategy.BEAR_CALL, 455, 450))
    assert spread.long_leg.right is Right.CALL and spread.long_leg.strike == 455
    assert spread.short_leg.strike == 450 and spread.short_leg.action is Action.SELL
    assert spread.is_credit and spread.strategy is Strategy.BEAR_CALL


def test_debit_spread_is_recognised() -> None:
    spread = VerticalSpread.of(Right.PUT, 450, 445, DAY)
    assert not spread.is_credit and spread.strategy is None


def test_malformed_spreads_are_refused() -> None:
    with pytest.raises(ValueError):
        VerticalSpread(
            OptionLeg(Right.PUT, 445, Action.SELL, DAY), OptionLeg(Right.PUT, 450, Action.SELL, DAY)
        )
    with pytest.raises(ValueError):
        VerticalSpread(
            OptionLeg(Right.PUT, 445, Action.BUY, DAY), OptionLeg(Right.CALL, 450, Action.SELL, DAY)
        )
    with pytest.raises(ValueError):
        VerticalSpread.of(Right.PUT, 445, 445, DAY)
    with pytest.raises(ValueError):
        OptionLeg(Right.PUT, -1, Action.BUY, DAY)


def test_spec_example_credit_080_is_buy_at_minus_080() -> None:
    assert opening_action() is Action.BUY
    assert combo_limit_for_credit(0.80) == -0.80
    assert credit_for_combo_price(-0.80) == 0.80


def test_closing_sells_the_same_combo() -> None:
    assert closing_action() is Action.SELL
    assert closing_action(Action.SELL) is Action.BUY


def test_guard_fails_closed() -> None:
    assert assert_credit_limit(-0.5) == -0.5
    for bad in (0.0, 0.80, float("nan"), float("inf")):
        with pytest.raises(CreditGuardError):
            assert_credit_limit(bad)
    for credit in (0.0, -0.8, float("nan")):
        with pytest.raises(CreditGuardError):
            combo_limit_for_credit(credit)


def test_mid_and_natural_credit() -> None:
    # short 450P 1.90/2.00 (mid 1.95), long 445P 1.05/1.15 (mid 1.10)
    assert mid_credit(1.90, 2.00, 1.05, 1.15) == pytest.approx(0.85)
    assert mid_credit(1.90, 2.00, 1.05, 1.15) == 0.85  # Decimal: exact, no drift
    assert natural_credit(1.90, 2.00, 1.05, 1.15) == 0.75
    assert leg_mid(1.05, 1.15) == 1.10


@pytest.mark.parametrize(
    "quote",
    [(2.0, 1.9, 1.0, 1.1), (1.9, 2.0, -0.1, 1.1), (float("nan"), 2.0, 1.0, 1.1)],
)
def test_bad_quotes_are_refused(quote: tuple[float, float, float, float]) -> None:
    with pytest.raises(InvalidQuote):
        mid_credit(*quote)
    with pytest.raises(InvalidQuote):
        natural_credit(*quote)


def test_round_to_tick() -> None:
    assert round_to_tick(0.853) == 0.85
    assert round_to_tick(0.855) == 0.86  # half up, not float's 0.85499999...
    assert round_to_tick(1.005) == 1.01
    assert round_to_tick(-0.855) == -0.86
    assert round_to_tick(0.87, tick=0.05) == 0.85
    with pytest.raises(ValueError):
        round_to_tick(float("nan"))
    with pytest.raises(ValueError):
        round_to_tick(1.0, tick=0)


@given(st.floats(min_value=0.005, max_value=1000, allow_nan=False))
def test_credit_spread_limit_is_never_positive(credit: float) -> None:
    limit = combo_limit_for_credit(credit)
    assert limit < 0
    assert credit_for_combo_price(limit) == round_to_tick(credit)


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_round_to_tick_lands_on_the_grid(x: float) -> None:
    rounded = round_to_tick(x)
    assert abs(rounded - x) <= 0.005 + 1e-9
    assert round(rounded * 100) == pytest.approx(rounded * 100)
