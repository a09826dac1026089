"""The simulated QQQ market: an underlying path and option quotes derived from it.

The underlying follows a seeded random walk on a one-second grid of *simulated*
time (optionally bent through scenario keypoints), so the price at a given
simulated instant depends only on the seed and the instant, never on how fast
or how often the server loop happens to look. Quotes can be held for a
coarser step (``quote_step``, e.g. 60 s: one-minute bars): on a compressed
clock a request that arrives a few simulated seconds later than in another
run then still sees the same prices, which is what makes a seeded demo
repeat to the cent. Option quotes are Black-Scholes
values with a smile, quoted on the penny grid a cent or a few cents wide.
Control faults can jump the price; a jump is an offset on top of the path.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any

from spreadpilot.clock import NEW_YORK, Clock
from spreadpilot.domain import calendar

from .contracts import Chain, Instrument
from .pricing import Greeks, Smile, black_scholes, quote_around

TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600


@lru_cache(maxsize=512)
def expiry_close(day: date) -> datetime:
    """The moment options expiring on ``day`` stop trading (UTC)."""
    try:
        return calendar.market_close(day).astimezone(UTC)
    except ValueError:
        return datetime.combine(day, time(16, 0), NEW_YORK).astimezone(UTC)


@lru_cache(maxsize=512)
def _session(day: date) -> tuple[float, float] | None:
    if not calendar.is_trading_day(day):
        return None
    return calendar.market_open(day).timestamp(), calendar.market_close(day).timestamp()


def in_session(epoch: float) -> bool:
    day = datetime.fromtimestamp(epoch, NEW_YORK).date()
    bounds = _session(day)
    return bounds is not None and bounds[0] <= epoch < bounds[1]


@dataclass(frozen=True)
class Quote:
    """A top-of-book quote; ``greeks`` only for options."""

    bid: float
    ask: float
    last: float
    bid_size: int
    ask_size: int
    last_size: int
    greeks: Greeks | None = None
    und_price: float | None = None

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass
class Scenario:
    """How the underlying moves. Loaded from a JSON or YAML file.

    ``spot`` is the opening price, ``walk_vol`` the annualised volatility of the
    random walk (0 for a flat line), ``atm_vol`` the options' at-the-money
    implied vol. ``path`` is an optional list of ``[time, price]`` keypoints
    (``"HH:MM"`` on the start day, New York, or ISO datetimes); the spot follows
    straight lines between them, with the random walk's relative moves on top
    when ``noise`` is true.
    """

    spot: float = 480.0
    walk_vol: float = 0.15
    atm_vol: float = 0.22
    skew_slope: float = -1.2
    skew_curvature: float = 6.0
    path: list[tuple[str, float]] = field(default_factory=list)
    noise: bool = True

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        text = Path(path).read_text()
        data: dict[str, Any]
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "path" in known:
            known["path"] = [(str(p[0]), float(p[1])) for p in known["path"]]
        scenario = cls(**known)
        if scenario.path and "spot" not in data:
            scenario.spot = scenario.path[0][1]
        return scenario


class Market:
    """Prices every listed instrument at any simulated instant."""

    def __init__(
        self,
        clock: Clock,
        chain: Chain,
        seed: int = 0,
        scenario: Scenario | None = None,
        quote_step: int = 1,
    ) -> None:
        if quote_step < 1:
            raise ValueError(f"quote_step must be a whole number of seconds >= 1, got {quote_step}")
        self.clock = clock
        self.quote_step = int(quote_step)
        self.chain = chain
        self.seed = seed
        self.scenario = scenario or Scenario(spot=chain.reference_spot)
        self.smile = Smile(
            atm_vol=self.scenario.atm_vol,
            slope=self.scenario.skew_slope,
            curvature=self.scenario.skew_curvature,
        )
        self._origin = int(clock.now().timestamp())
        self._rng = random.Random(f"ibsim-walk:{seed}")
        self._path: list[float] = [1.0]
        self._sigma = self.scenario.walk_vol / math.sqrt(TRADING_SECONDS_PER_YEAR)
        self._offset = 0.0
        self._version = 0
        self._cache: dict[int, tuple[int, int, Quote]] = {}
        self._keypoints = self._parse_keypoints(self.scenario.path)

    # -- the underlying -------------------------------------------------------

    def _parse_keypoints(self, raw: list[tuple[str, float]]) -> list[tuple[float, float]]:
        start_day = datetime.fromtimestamp(self._origin, NEW_YORK).date()
        points: list[tuple[float, float]] = []
        for when, price in raw:
            if len(when) <= 5 and ":" in when:
                hh, mm = when.split(":")
                moment = datetime.combine(start_day, time(int(hh), int(mm)), NEW_YORK)
            else:
                moment = datetime.fromisoformat(when)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=NEW_YORK)
            points.append((moment.timestamp(), price))
        points.sort()
        return points

    def _walk(self, second: int) -> float:
        """Relative level of the random walk at whole second ``second`` since the origin."""
        if second <= 0:
            return 1.0
        path = self._path
        while len(path) <= second:
            z = self._rng.gauss(0.0, 1.0)
            epoch = self._origin + len(path)
            if in_session(epoch):
                step = math.exp(self._sigma * z - 0.5 * self._sigma * self._sigma)
                path.append(path[-1] * step)
            else:
                path.append(path[-1])
        return path[second]

    def _base(self, epoch: float) -> float:
        points = self._keypoints
        if not points:
            return self.scenario.spot
        if epoch <= points[0][0]:
            return points[0][1]
        for (t0, p0), (t1, p1) in itertools.pairwise(points):
            if epoch <= t1:
                return p0 + (p1 - p0) * (epoch - t0) / (t1 - t0)
        return points[-1][1]

    def _second(self, moment: datetime | None) -> int:
        """Seconds since the origin of the quote step holding ``moment`` (default: now)."""
        moment = moment or self.clock.now()
        epoch = math.floor(moment.timestamp())
        return epoch - epoch % self.quote_step - self._origin

    def _step_moment(self, moment: datetime | None) -> datetime:
        return datetime.fromtimestamp(self._origin + self._second(moment), UTC)

    def spot(self, moment: datetime | None = None) -> float:
        """The underlying's fair price at ``moment`` (default: now)."""
        second = self._second(moment)
        epoch = self._origin + second
        walk = self._walk(second) if (self.scenario.noise or not self._keypoints) else 1.0
        if self.scenario.walk_vol <= 0:
            walk = 1.0
        return max(0.01, self._base(epoch) * walk + self._offset)

    def set_spot(self, price: float) -> None:
        """Jump the underlying to ``price`` now (the path continues from there)."""
        self._offset += price - self.spot()
        self._version += 1

    def shift(self, delta: float) -> None:
        """Jump the underlying by ``delta`` dollars now."""
        self._offset += delta
        self._version += 1

    # -- quotes -----------------------------------------------------------------

    def minutes_to_expiry(self, instrument: Instrument, moment: datetime | None = None) -> float:
        if instrument.expiry is None:
            return math.inf
        moment = moment or self.clock.now()
        return (expiry_close(instrument.expiry) - moment).total_seconds() / 60.0

    def is_expired(self, instrument: Instrument, moment: datetime | None = None) -> bool:
        return instrument.is_option and self.minutes_to_expiry(instrument, moment) <= 0

    def greeks(self, instrument: Instrument, moment: datetime | None = None) -> Greeks:
        moment = self._step_moment(moment)
        spot = self.spot(moment)
        minutes = self.minutes_to_expiry(instrument, moment)
        vol = self.smile.vol(spot, instrument.strike)
        return black_scholes(spot, instrument.strike, minutes, vol, instrument.right)

    def quote(self, instrument: Instrument, moment: datetime | None = None) -> Quote:
        """Top of book for ``instrument``; cached per simulated second."""
        second = self._second(moment)
        cached = self._cache.get(instrument.con_id)
        if cached and cached[0] == second and cached[1] == self._version:
            return cached[2]
        # Priced at the start of its step, so every request within the step
        # (and the cache) sees the same numbers.
        quote = self._compute(
            instrument, datetime.fromtimestamp(self._origin + second, UTC), second
        )
        self._cache[instrument.con_id] = (second, self._version, quote)
        return quote

    def _compute(self, instrument: Instrument, moment: datetime, second: int) -> Quote:
        spot = self.spot(moment)
        bid_size = _pseudo_size(instrument.con_id, second, 1)
        ask_size = _pseudo_size(instrument.con_id, second, 2)
        if not instrument.is_option:
            bid = math.floor(spot * 100) / 100
            ask = round(bid + 0.01, 2)
            return Quote(bid, ask, round(spot, 2), bid_size * 100, ask_size * 100, 100)
        greeks = self.greeks(instrument, moment)
        if self.is_expired(instrument, moment):
            value = round(instrument.intrinsic(spot), 2)
            return Quote(value, value, value, bid_size, ask_size, 1, greeks, spot)
        bid, ask = quote_around(greeks.price)
        last = round((bid + ask) / 2, 2)
        return Quote(bid, ask, last, bid_size, ask_size, 1, greeks, spot)

    def mark(self, instrument: Instrument, moment: datetime | None = None) -> float:
        """The mid used to value positions."""
        return self.quote(instrument, moment).mid


def _pseudo_size(con_id: int, second: int, salt: int) -> int:
    """A deterministic, plausible displayed size (1..60 contracts)."""
    h = (con_id * 2654435761 + (second // 5) * 40503 + salt * 97) & 0xFFFFFFFF
    return 1 + h % 60
