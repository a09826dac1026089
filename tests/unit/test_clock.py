"""The clock abstraction: scaled maths, manual clock, env round trip."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from spreadpilot.clock import (
    NEW_YORK,
    ManualClock,
    RealClock,
    ScaledClock,
    clock_from_env,
    now_new_york,
)

START = datetime(2026, 3, 2, 9, 25, tzinfo=NEW_YORK)


def test_real_clock_is_utc_and_unscaled() -> None:
    clock = RealClock()
    assert clock.now().tzinfo == UTC and clock.speed() == 1.0
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 5


def test_scaled_clock_maths() -> None:
    # 120 simulated seconds per wall second, anchored 10 wall seconds ago.
    clock = ScaledClock(START, speed=120, anchor=time.time() - 10)
    elapsed = (clock.now() - START).total_seconds()
    assert 1200 <= elapsed < 1200 + 120 * 2  # 20 minutes, plus a little test run time
    assert clock.speed() == 120
    assert clock.wall_seconds(60) == 0.5
    assert clock.wall_seconds(-5) == 0.0
    assert clock.start == START.astimezone(UTC)


def test_scaled_clocks_with_the_same_numbers_agree() -> None:
    anchor = time.time()
    a = ScaledClock(START, 120, anchor)
    b = clock_from_env(a.to_env())
    assert isinstance(b, ScaledClock)
    assert (b.start, b.speed(), b.anchor) == (a.start, a.speed(), a.anchor)
    assert abs((a.now() - b.now()).total_seconds()) < 120  # within one wall second


def test_scaled_clock_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ScaledClock(datetime(2026, 3, 2, 9, 25), 10)
    with pytest.raises(ValueError):
        ScaledClock(START, 0)


def test_scaled_sleep_is_shortened() -> None:
    clock = ScaledClock(START, speed=1000)
    wall = time.monotonic()
    clock.sleep_blocking(50)  # 0.05 wall seconds
    asyncio.run(clock.sleep(50))
    assert time.monotonic() - wall < 2


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(START)
    assert clock.now() == START and clock.now().tzinfo == UTC
    clock.advance(30)
    assert clock.now() == START + timedelta(seconds=30)
    clock.sleep_blocking(5)
    asyncio.run(clock.sleep(25))
    clock.sleep_blocking(-10)  # never goes backwards through sleep
    assert clock.now() == START + timedelta(minutes=1)
    assert now_new_york(clock).hour == 9 and now_new_york(clock).minute == 26
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 3, 2))


def test_clock_from_env() -> None:
    assert isinstance(clock_from_env({}), RealClock)
    clock = clock_from_env({"SIM_START": "2026-03-02T09:25:00", "SIM_SPEED": "60"})
    assert isinstance(clock, ScaledClock)
    assert clock.start == START.astimezone(UTC)  # naive start means New York
    assert clock.speed() == 60
