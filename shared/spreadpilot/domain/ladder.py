"""The limit ladder plan (SPEC section 3, step 6).

The plan is computed up front, as data, so that the executor only walks it and
every rung can be shown, logged and tested before any order exists. Rung k asks
``round_to_tick(mid) - k * increment`` of credit; the ladder stops before a
rung would ask less than MIN_PRICE, so we never sell the spread cheaper than
the strategy allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from spreadpilot.domain.spreads import TICK, combo_limit_for_credit, round_to_tick


@dataclass(frozen=True)
class Rung:
    """One step: the credit asked and the (negative) BUY combo limit that asks it."""

    index: int
    credit: float
    limit: float


def ladder_plan(
    mid_credit: float,
    increment: float = 0.01,
    min_price: float = 0.70,
    max_attempts: int = 10,
) -> list[Rung]:
    """Rungs k = 0..max_attempts-1 from the mid credit down by ``increment``.

    Empty when the mid itself is below ``min_price`` (MID_TOO_LOW: no order).
    ``increment`` must be a whole number of ticks so every rung is a valid
    price. Example: mid 0.853 -> 0.85, 0.84, ... 0.76 (10 rungs); mid 0.72 ->
    0.72, 0.71, 0.70.
    """
    if not math.isfinite(mid_credit):
        raise ValueError(f"mid credit must be finite, got {mid_credit}")
    if not (math.isfinite(min_price) and min_price > 0):
        raise ValueError(f"min_price must be positive, got {min_price}")
    if max_attempts < 0:
        raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
    step = Decimal(repr(float(increment)))
    tick = Decimal(repr(TICK))
    if not (step.is_finite() and step > 0 and step % tick == 0):
        raise ValueError(f"increment must be a positive multiple of {TICK}, got {increment}")
    if mid_credit < min_price:
        return []
    floor = Decimal(repr(float(min_price)))
    start = Decimal(repr(round_to_tick(mid_credit)))
    rungs: list[Rung] = []
    for k in range(max_attempts):
        credit = start - k * step
        if credit < floor:
            break
        rungs.append(Rung(k, float(credit), combo_limit_for_credit(float(credit))))
    return rungs
