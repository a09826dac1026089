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
from collections.abc import Sequence
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

    def wall_seconds(self, simulated_seconds: float) -> float:
        """How long the next ``simulated_seconds`` of clock time last on the wall."""
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

    def wall_seconds(self, simulated_seconds: float) -> float:
        return max(0.0, simulated_seconds)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def sleep_blocking(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock.

    ``anchor`` is the wall-clock epoch (seconds) at which simulated time equals
    ``start``. Processes given the same (start, speed, anchor) share one time.

    ``changes`` lets the pace vary over the day: each ``(moment, speed)`` pair
    says that from simulated ``moment`` on, time runs at ``speed``. Why: at
    200x, 5 ms of wall latency is a simulated second, so a ladder's 5 s rungs
    would last 25 ms and their outcome would depend on how busy the machine
    was. The demo slows down around the entry (10x: a 5 s rung lasts half a
    wall second) and races through the quiet hours, so the same seed gives
    the same fills. The mapping is still a pure function of the numbers, so
    processes handed the same ones agree.
    """

    def __init__(
        self,
        start: datetime,
        speed: float,
        anchor: float | None = None,
        changes: Sequence[tuple[datetime, float]] = (),
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock start must be timezone-aware")
        if speed <= 0:
            raise ValueError(f"ScaledClock speed must be positive, got {speed}")
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._anchor = time.time() if anchor is None else float(anchor)
        self._changes: list[tuple[datetime, float]] = []
        # Segments (simulated epoch, wall epoch, speed), in order.
        self._segments: list[tuple[float, float, float]] = [
            (self._start.timestamp(), self._anchor, self._speed)
        ]
        for moment, pace in sorted(changes, key=lambda c: c[0]):
            if moment.tzinfo is None:
                raise ValueError("ScaledClock speed change moments must be timezone-aware")
            if pace <= 0:
                raise ValueError(f"ScaledClock speed must be positive, got {pace}")
            sim0, wall0, speed0 = self._segments[-1]
            at = moment.timestamp()
            if at <= sim0:
                raise ValueError("ScaledClock speed changes must come after the start")
            self._segments.append((at, wall0 + (at - sim0) / speed0, float(pace)))
            self._changes.append((moment.astimezone(UTC), float(pace)))

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def anchor(self) -> float:
        return self._anchor

    def _segment(self, axis: int, value: float) -> tuple[float, float, float]:
        """The segment holding ``value`` on ``axis`` (0: simulated epoch, 1: wall epoch)."""
        current = self._segments[0]
        for segment in self._segments[1:]:
            if segment[axis] > value:
                break
            current = segment
        return current

    def _segment_at_wall(self, wall: float) -> tuple[float, float, float]:
        return self._segment(1, wall)

    def speed(self) -> float:
        return self._segment_at_wall(time.time())[2]

    def now(self) -> datetime:
        wall = time.time()
        sim0, wall0, pace = self._segment_at_wall(wall)
        return datetime.fromtimestamp(sim0 + (wall - wall0) * pace, UTC)

    def wall_at(self, moment: datetime) -> float:
        """The wall-clock epoch at which this clock reads ``moment``."""
        sim = moment.timestamp()
        sim0, wall0, pace = self._segment(0, sim)
        return wall0 + (sim - sim0) / pace

    def wall_seconds(self, simulated_seconds: float) -> float:
        """How long the next ``simulated_seconds`` of clock time last on the wall."""
        wall = time.time()
        sim0, wall0, pace = self._segment_at_wall(wall)
        now = sim0 + (wall - wall0) * pace
        target = datetime.fromtimestamp(now + max(0.0, simulated_seconds), UTC)
        return max(0.0, self.wall_at(target) - wall)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.wall_seconds(seconds))

    def sleep_blocking(self, seconds: float) -> None:
        time.sleep(self.wall_seconds(seconds))

    def to_env(self) -> dict[str, str]:
        """The environment variables another process needs to share this clock."""
        env = {
            "SIM_START": self._start.isoformat(),
            "SIM_SPEED": repr(self._speed),
            "SIM_ANCHOR": repr(self._anchor),
        }
        if self._changes:
            env["SIM_SPEED_CHANGES"] = ",".join(
                f"{moment.isoformat()}={pace!r}" for moment, pace in self._changes
            )
        return env


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

    def wall_seconds(self, simulated_seconds: float) -> float:
        """As if at speed 1: a caller waiting on the wall waits as long as it asked."""
        return max(0.0, simulated_seconds)

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
        parse_speed_changes(env.get("SIM_SPEED_CHANGES", "")),
    )


def parse_speed_changes(text: str) -> list[tuple[datetime, float]]:
    """``ISO=SPEED,ISO=SPEED`` (as ``ScaledClock.to_env`` writes it) -> pairs."""
    changes: list[tuple[datetime, float]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        when, sep, pace = item.rpartition("=")
        if not sep:
            raise ValueError(f"SIM_SPEED_CHANGES item {item!r} is not MOMENT=SPEED")
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=NEW_YORK)
        changes.append((moment, float(pace)))
    return changes
