"""A Signal rebuilt from JSON (a Pub/Sub message) is re-checked before anyone acts on it."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError
from spreadpilot.domain.signals import Signal, SignalLimits, limits_problem

DAY = date(2041, 1, 7)


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "signal_id": "s-1",
        "trading_date": DAY.isoformat(),
        "strategy": "bull_put",
        "qty_per_leg": 10,
        "strike_long": 445.0,
        "strike_short": 450.0,
        "expiry": DAY.isoformat(),
        "source": "manual",
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize("raw", ["1e999999", "Infinity", "-Infinity", "NaN", "1e6"])
def test_non_finite_or_absurd_strikes_are_not_signals(raw: str) -> None:
    text = json.dumps(_body()).replace('"strike_short": 450.0', f'"strike_short": {raw}')
    with pytest.raises(ValidationError):
        Signal.from_json(text)


def test_a_signal_within_limits_has_no_problem() -> None:
    assert limits_problem(Signal.model_validate(_body())) is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"qty_per_leg": 10**30}, "outside 1..50"),
        ({"qty_per_leg": 51}, "outside 1..50"),
        ({"strike_short": 450.5}, "strike grid"),
        ({"strike_short": 470.0}, "MAX_SPREAD_WIDTH"),
        ({"ticker": "SPY"}, "is not QQQ"),
    ],
)
def test_limits_are_rechecked(overrides: dict[str, Any], words: str) -> None:
    problem = limits_problem(Signal.model_validate(_body(**overrides)))
    assert problem is not None and words in problem


def test_limits_come_from_configuration() -> None:
    wide = Signal.model_validate(_body(strike_short=470.0))
    assert limits_problem(wide, SignalLimits(max_spread_width=30)) is None
