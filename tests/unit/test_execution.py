"""The execution state machine and order refs (SPEC section 3)."""

from __future__ import annotations

import pytest
from spreadpilot.domain.execution import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    can_transition,
    is_terminal,
    order_ref_for,
    transition,
)
from spreadpilot.domain.execution import (
    ExecutionState as S,
)


def walk(*states: S) -> S:
    current = states[0]
    for target in states[1:]:
        current = transition(current, target)
    return current


def test_happy_path_with_rung_moves_and_partial_fills() -> None:
    end = walk(
        S.RECEIVED,
        S.SIZED,
        S.QUOTED,
        S.MARGIN_OK,
        S.WORKING,
        S.WORKING,
        S.PARTIAL,
        S.PARTIAL,
        S.FILLED,
    )
    assert end is S.FILLED and is_terminal(end)


@pytest.mark.parametrize(
    "path",
    [
        (S.RECEIVED, S.SKIPPED),
        (S.RECEIVED, S.SIZED, S.POSITION_LIMIT),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.MID_TOO_LOW),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.NO_MARGIN),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.MARGIN_OK, S.REJECTED),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.MARGIN_OK, S.WORKING, S.LIMIT_REACHED),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.MARGIN_OK, S.WORKING, S.PARTIAL, S.LIMIT_REACHED),
        (S.RECEIVED, S.SIZED, S.QUOTED, S.MARGIN_OK, S.WORKING, S.FAILED),
    ],
)
def test_every_outcome_is_reachable(path: tuple[S, ...]) -> None:
    assert is_terminal(walk(*path))


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.FILLED, S.WORKING),
        (S.RECEIVED, S.WORKING),
        (S.QUOTED, S.FILLED),
        (S.PARTIAL, S.REJECTED),
        (S.PARTIAL, S.WORKING),
        (S.LIMIT_REACHED, S.FAILED),
        (S.SIZED, S.SIZED),
    ],
)
def test_illegal_transitions_raise(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(current, target)
    assert info.value.current is current and info.value.target is target
    assert f"{current.value} -> {target.value}" in str(info.value)


def test_table_shape() -> None:
    assert set(TRANSITIONS) == set(S)
    for state in S:
        if is_terminal(state):
            assert TRANSITIONS[state] == frozenset()
        else:
            assert can_transition(state, S.FAILED)
            assert TRANSITIONS[state]
    assert S.PARTIAL not in TERMINAL_STATES and S.WORKING not in TERMINAL_STATES


def test_order_ref_is_deterministic_short_and_distinct() -> None:
    ref = order_ref_for("20260302-bull_put-445-450-x10-53faee99", "follower123")
    assert ref == order_ref_for("20260302-bull_put-445-450-x10-53faee99", "follower123")
    assert ref.startswith("sp-follower123-") and len(ref) <= 40
    assert ref != order_ref_for("20260302-bull_put-445-450-x10-53faee99", "follower124")
    assert ref != order_ref_for("other", "follower123")
    long_ref = order_ref_for("x" * 500, "a-very-long-follower-slug-" * 3)
    assert len(long_ref) <= 40
    assert order_ref_for("s", "___").startswith("sp-") and len(order_ref_for("s", "___")) <= 40
