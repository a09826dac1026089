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


def test_scaled_clock_with_speed_changes() -> None:
    """200x, then 10x from 09:26:58 to 09:28:10, then 200x: the day races
    except around the entry, and every process given the numbers agrees."""
    slow_from = START.replace(minute=26, second=58)
    slow_to = START.replace(minute=28, second=10)
    anchor = time.time() - 1.0  # one wall second ago
    clock = ScaledClock(START, 200, anchor, [(slow_to, 200.0), (slow_from, 10.0)])
    # 09:25 + 200 s would be 09:28:20, but from 09:26:58 (118 s = 0.59 wall s) time
    # runs at 10x: 0.41 wall s more is 4.1 simulated s, so 09:27:02.1.
    now = clock.now().astimezone(NEW_YORK)
    assert abs((now - slow_from).total_seconds() - 4.1) < 0.2
    assert clock.speed() == 10.0
    assert clock.wall_at(slow_from) == pytest.approx(anchor + 0.59)
    assert clock.wall_at(slow_to) == pytest.approx(anchor + 0.59 + 7.2)
    assert clock.wall_at(slow_to + timedelta(seconds=400)) == pytest.approx(anchor + 0.59 + 9.2)
    # The next 10 s are a wall second; the next 80 s cross into 200x: 6.8 + 0.07 ... wall s.
    assert clock.wall_seconds(10) == pytest.approx(1.0, abs=0.05)
    remaining_slow = (slow_to - clock.now()).total_seconds()
    expected = remaining_slow / 10 + (80 - remaining_slow) / 200
    assert clock.wall_seconds(80) == pytest.approx(expected, abs=0.05)
    twin = clock_from_env(clock.to_env())
    assert isinstance(twin, ScaledClock)
    assert abs((twin.now() - clock.now()).total_seconds()) < 0.1
    assert twin.wall_at(slow_to) == pytest.approx(clock.wall_at(slow_to))
    assert "SIM_SPEED_CHANGES" not in ScaledClock(START, 5).to_env()


def test_scaled_clock_speed_changes_are_checked() -> None:
    with pytest.raises(ValueError, match="after the start"):
        ScaledClock(START, 10, changes=[(START - timedelta(seconds=1), 5.0)])
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(START, 10, changes=[(START + timedelta(seconds=1), 0.0)])
    with pytest.raises(ValueError, match="MOMENT=SPEED"):
        clock_from_env({"SIM_START": START.isoformat(), "SIM_SPEED_CHANGES": "garbage"})
