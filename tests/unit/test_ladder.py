"""The limit ladder plan (SPEC section 3, step 6)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spreadpilot.domain.ladder import Rung, ladder_plan


def test_spec_ladder_from_mid_085() -> None:
    plan = ladder_plan(0.85)
    assert [r.credit for r in plan] == [0.85, 0.84, 0.83, 0.82, 0.81, 0.80, 0.79, 0.78, 0.77, 0.76]
    assert [r.index for r in plan] == list(range(10))
    assert plan[0] == Rung(0, 0.85, -0.85)
    assert all(r.limit == -r.credit for r in plan)


def test_mid_is_rounded_to_the_tick_first() -> None:
    assert ladder_plan(0.853)[0].credit == 0.85
    assert ladder_plan(0.855)[0].credit == 0.86


def test_ladder_stops_before_min_price() -> None:
    assert [r.credit for r in ladder_plan(0.72)] == [0.72, 0.71, 0.70]
    assert [r.credit for r in ladder_plan(0.70)] == [0.70]


def test_mid_below_min_price_gives_no_plan() -> None:
    assert ladder_plan(0.69) == []
    assert ladder_plan(0.699) == []  # below MIN_PRICE even though it rounds to 0.70
    assert ladder_plan(-0.20) == []


def test_parameters() -> None:
    assert [r.credit for r in ladder_plan(1.00, increment=0.05, max_attempts=3)] == [1.0, 0.95, 0.9]
    assert [r.credit for r in ladder_plan(1.00, min_price=0.98)] == [1.0, 0.99, 0.98]
    assert ladder_plan(1.00, max_attempts=0) == []
    for bad in ({"increment": 0.0}, {"increment": 0.015}, {"min_price": 0.0}, {"max_attempts": -1}):
        with pytest.raises(ValueError):
            ladder_plan(1.0, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ladder_plan(float("nan"))


@given(
    mid=st.floats(min_value=-5, max_value=50, allow_nan=False),
    ticks=st.integers(min_value=1, max_value=10),
    min_price=st.floats(min_value=0.01, max_value=5, allow_nan=False),
    attempts=st.integers(min_value=0, max_value=30),
)
def test_ladder_properties(mid: float, ticks: int, min_price: float, attempts: int) -> None:
    increment = ticks / 100
    plan = ladder_plan(mid, increment=increment, min_price=min_price, max_attempts=attempts)
    assert len(plan) <= attempts
    credits = [r.credit for r in plan]
    assert all(a > b for a, b in itertools.pairwise(credits))
    assert all(c >= min_price for c in credits)
    assert all(r.limit < 0 and r.limit == -r.credit for r in plan)
    if mid < min_price:
        assert plan == []
    for a, b in itertools.pairwise(credits):
        assert a - b == pytest.approx(increment)
