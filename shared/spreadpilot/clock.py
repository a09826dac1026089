"""One clock abstraction for every process.

Production reads the wall clock. The demo and the end-to-end tests run a
*scaled* clock: simulated time = start + (wall - anchor) * speed. Because the
mapping depends only on (start, speed, anchor), separate processes (ibsim, the
sidecar, the local runner) that are handed the same three numbers agree on the
simulated time without talking to each other. Unit tests use ``ManualClock``,
which moves only when told to.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


class Clock(Protocol):
    """What the rest of the code may ask of time."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    def speed(self) -> float:
        """Simulated seconds per wall second (1.0 for the real clock)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of *clock* time."""
        ...

    def sleep_blocking(self, seconds: float) -> None:
        """Blocking variant for synchronous code (functions, CLI)."""
        ...


def now_new_york(clock: Clock) -> datetime:
    """The clock's time in America/New_York, where all trading times live."""
    return clock.now().astimezone(NEW_YORK)


class RealClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def speed(self) -> float:
        return 1.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def sleep_blocking(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock.

    ``anchor`` is the wall-clock epoch (seconds) at which simulated time equals
    ``start``. Processes given the same (start, speed, anchor) share one time.
    """

    def __init__(self, start: datetime, speed: float, anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock start must be timezone-aware")
        if speed <= 0:
            raise ValueError(f"ScaledClock speed must be positive, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._anchor = time.time() if anchor is None else float(anchor)

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def anchor(self) -> float:
        return self._anchor

    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed_wall = time.time() - self._anchor
        return self._start + timedelta(seconds=elapsed_wall * self._speed)

    def wall_seconds(self, simulated_seconds: float) -> float:
        """How long ``simulated_seconds`` of clock time last on the wall."""
        return max(0.0, simulated_seconds) / self._speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.wall_seconds(seconds))

    def sleep_blocking(self, seconds: float) -> None:
        time.sleep(self.wall_seconds(seconds))

    def to_env(self) -> dict[str, str]:
        """The environment variables another process needs to share this clock."""
        return {
            "SIM_START": self._start.isoformat(),
            "SIM_SPEED": repr(self._speed),
            "SIM_ANCHOR": repr(self._anchor),
        }


class ManualClock:
    """A clock for tests: time stands still until ``advance`` is called.

    ``sleep`` advances the clock instead of waiting, so code under test that
    sleeps between steps runs instantly and deterministically.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def speed(self) -> float:
        return 1.0

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def sleep_blocking(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


def clock_from_env(env: dict[str, str]) -> Clock:
    """The real clock, or the scaled one when SIM_START/SIM_SPEED are set."""
    start = env.get("SIM_START")
    if not start:
        return RealClock()
    started = datetime.fromisoformat(start)
    if started.tzinfo is None:
        started = started.replace(tzinfo=NEW_YORK)
    anchor = env.get("SIM_ANCHOR")
    return ScaledClock(
        started,
        float(env.get("SIM_SPEED", "1.0")),
        float(anchor) if anchor else None,
    )
