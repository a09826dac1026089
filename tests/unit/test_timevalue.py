"""Time value, status, and grouping positions into spreads (SPEC section 4)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spreadpilot.domain.alerts import AlertType
from spreadpilot.domain.spreads import Action, Right
from spreadpilot.domain.timevalue import (
    FindingKind,
    Position,
    TvStatus,
    classify,
    group_spreads,
    intrinsic,
    spread_status,
    time_value,
)

EXP = date(2026, 3, 2)


def test_intrinsic() -> None:
    assert intrinsic(Right.CALL, 450, 452.5) == 2.5
    assert intrinsic(Right.CALL, 450, 449) == 0.0
    assert intrinsic(Right.PUT, 450, 447.3) == 2.7
    assert intrinsic(Right.PUT, 450, 451) == 0.0


def test_time_value_worked_examples() -> None:
    # short 450 put, QQQ at 449.00, put mid 1.05: intrinsic 1.00, TV 0.05 -> CRITICAL
    assert time_value(1.05, Right.PUT, 450, 449.0) == 0.05
    assert classify(0.05) is TvStatus.CRITICAL
    # out of the money: all of the mid is time value
    assert time_value(0.80, Right.CALL, 455, 450) == 0.80
    assert classify(0.80) is TvStatus.RISK
    assert classify(1.20) is TvStatus.SAFE


def test_classify_boundaries_are_inclusive_and_float_safe() -> None:
    assert classify(0.10) is TvStatus.CRITICAL
    assert classify(1.1 - 1.0) is TvStatus.CRITICAL  # 0.10000000000000009
    assert classify(0.11) is TvStatus.RISK
    assert classify(1.00) is TvStatus.RISK
    assert classify(1.01) is TvStatus.SAFE
    assert classify(-0.3) is TvStatus.CRITICAL
    assert classify(0.5, critical=0.6, risk=2.0) is TvStatus.CRITICAL


def test_classify_refuses_missing_data() -> None:
    with pytest.raises(ValueError):
        classify(float("nan"))
    with pytest.raises(ValueError):
        classify(0.5, critical=1.0, risk=0.5)
    with pytest.raises(ValueError):
        time_value(float("nan"), Right.PUT, 450, 449)


def test_spread_status_is_the_short_legs() -> None:
    assert spread_status(0.08) is TvStatus.CRITICAL
    assert spread_status(3.0) is TvStatus.SAFE
    assert TvStatus.CRITICAL.alert_type is AlertType.TV_CRITICAL
    assert TvStatus.SAFE.alert_type is AlertType.TV_SAFE


@given(
    right=st.sampled_from(list(Right)),
    strike=st.floats(min_value=1, max_value=1000, allow_nan=False),
    underlying=st.floats(min_value=1, max_value=1000, allow_nan=False),
    extra=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_tv_of_a_correctly_priced_option_is_never_negative(
    right: Right, strike: float, underlying: float, extra: float
) -> None:
    price = intrinsic(right, strike, underlying) + extra
    assert time_value(price, right, strike, underlying) >= 0


# --- grouping -------------------------------------------------------------------


def opt(key: str, right: Right, strike: float, qty: int, expiry: date = EXP) -> Position:
    return Position.option(key, right, strike, expiry, qty)


def test_bull_put_pairs_into_one_spread() -> None:
    spreads, orphans = group_spreads([opt("a", Right.PUT, 445, 10), opt("b", Right.PUT, 450, -10)])
    assert orphans == []
    [spread] = spreads
    assert spread.qty == 10 and spread.long.key == "a" and spread.short.key == "b"
    vertical = spread.vertical
    assert vertical.long_leg.strike == 445 and vertical.long_leg.action is Action.BUY
    assert vertical.short_leg.strike == 450 and vertical.is_credit


def test_two_spreads_pair_on_the_protective_side() -> None:
    positions = [
        opt("l1", Right.PUT, 440, 1),
        opt("s1", Right.PUT, 445, -1),
        opt("l2", Right.PUT, 447, 1),
        opt("s2", Right.PUT, 452, -1),
        opt("c1", Right.CALL, 460, 2),
        opt("c2", Right.CALL, 455, -2),
    ]
    spreads, orphans = group_spreads(positions)
    assert orphans == []
    pairs = {(s.long.key, s.short.key) for s in spreads}
    assert pairs == {("l1", "s1"), ("l2", "s2"), ("c1", "c2")}
    assert all(s.vertical.is_credit for s in spreads)


def test_short_missing_is_assignment() -> None:
    spreads, orphans = group_spreads([opt("a", Right.PUT, 445, 10)])
    assert spreads == []
    [finding] = orphans
    assert finding.kind is FindingKind.SHORT_LEG_MISSING
    assert finding.alert_type is AlertType.ASSIGNMENT_DETECTED


def test_stock_position_is_assignment_and_other_symbols_ignored() -> None:
    positions = [
        Position.stock("qqq", 1000),
        Position.stock("spy", 5, symbol="SPY"),
        opt("x", Right.PUT, 445, 0),
        Position("fut", "QQQ", "FUT", 1),
    ]
    spreads, orphans = group_spreads(positions)
    assert spreads == []
    assert [(o.kind, o.position.key) for o in orphans] == [(FindingKind.STOCK_POSITION, "qqq")]
    assert orphans[0].alert_type is AlertType.ASSIGNMENT_DETECTED


def test_naked_short_is_a_legged_position() -> None:
    _, orphans = group_spreads([opt("s", Right.CALL, 450, -3)])
    assert [o.kind for o in orphans] == [FindingKind.NAKED_SHORT]
    assert orphans[0].alert_type is AlertType.LEGGED_POSITION


def test_unequal_quantities_pair_the_hedged_part() -> None:
    spreads, orphans = group_spreads([opt("l", Right.PUT, 445, 4), opt("s", Right.PUT, 450, -10)])
    assert [(s.qty, s.long.qty, s.short.qty) for s in spreads] == [(4, 4, -4)]
    assert [(o.kind, o.position.qty) for o in orphans] == [(FindingKind.NAKED_SHORT, -6)]


def test_different_expiry_or_right_do_not_pair() -> None:
    positions = [
        opt("l", Right.PUT, 445, 1),
        opt("s", Right.PUT, 450, -1, expiry=date(2026, 3, 3)),
        opt("c", Right.CALL, 450, -1),
    ]
    spreads, orphans = group_spreads(positions)
    assert spreads == []
    assert sorted(o.kind for o in orphans) == sorted(
        [FindingKind.SHORT_LEG_MISSING, FindingKind.NAKED_SHORT, FindingKind.NAKED_SHORT]
    )


def test_option_without_contract_details_is_an_error() -> None:
    with pytest.raises(ValueError):
        group_spreads([Position("k", "QQQ", "OPT", 1)])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Right)),
            st.integers(min_value=440, max_value=460),
            st.integers(min_value=-5, max_value=5),
        ),
        max_size=8,
    )
)
def test_grouping_conserves_quantity(legs: list[tuple[Right, int, int]]) -> None:
    positions = [opt(str(i), r, k, q) for i, (r, k, q) in enumerate(legs)]
    spreads, orphans = group_spreads(positions)
    net: dict[str, int] = {}
    for s in spreads:
        assert s.long.qty == s.qty > 0 and s.short.qty == -s.qty
        assert s.long.right is s.short.right and s.long.expiry == s.short.expiry
        net[s.long.key] = net.get(s.long.key, 0) + s.long.qty
        net[s.short.key] = net.get(s.short.key, 0) + s.short.qty
    for o in orphans:
        net[o.position.key] = net.get(o.position.key, 0) + o.position.qty
    assert net == {p.key: p.qty for p in positions if p.qty}
