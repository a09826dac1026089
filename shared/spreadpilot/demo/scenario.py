"""The demo's embedded defaults: the day, the market, the signal, the followers.

Why each default is what it is:

- **The day**: the most recent NYSE *full* session on or before today (an
  early close would cut the afternoon short and expire the options at 13:00),
  so "today's signal" in the sheet is a real recent date. ``--date`` pins it.
  Outcomes do not depend on the date: the market below is defined in
  New York wall-clock terms and by the seed.
- **The market**: QQQ follows a path defined minute by minute: a morning dip
  that tests the short put, then an afternoon rally that takes its time value
  down to the 0.10 line, which is the TV liquidation the demo must show. A
  seeded random walk is layered on the path, so each seed is a different but
  reproducible day. The path is handed to ibsim as keypoints with its own
  noise off, which makes the quotes a pure function of simulated time (ibsim's
  built-in walk starts from the second the process happens to start, which a
  wall-clock start-up cannot pin down).
- **The signal**: a bull put ("Long") one strike below the 09:27 price, 5 wide,
  5 per leg: about a dollar of credit on an elevated-volatility morning, well
  above MIN_PRICE 0.70.
- **The followers**: anna and ben on $100,000 paper accounts, carla on a
  small $5,000 one (ibsim serves each account with its own equity). carla
  trades an ordinary 3x the signal (15 spreads, about $6,000 of Reg-T margin
  at a dollar of credit), as a real small follower might, which her account
  cannot carry: she is the follower without enough margin and must end
  NO_MARGIN with the margin figures and no order sent. (15 spreads need
  more than $5,000 for any credit below $1.66; the signal's is about $0.90.)
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from spreadpilot.clock import NEW_YORK
from spreadpilot.domain import calendar
from spreadpilot.domain.followers import Follower

SIGNAL_QTY = 5
SPREAD_WIDTH = 5
OPEN_SPOT = 480.0
ATM_VOL = 0.28
ACCOUNT_EQUITY = 100_000.0
SMALL_ACCOUNT_EQUITY = 5_000.0

# (minutes after 09:30, level relative to the open) the day's shape follows.
_SHAPE: tuple[tuple[int, float], ...] = (
    (-5, 0.0),
    (5, 0.0),  # flat while the signal is laddered in: fills depend on the seed, not on jitter
    (30, -0.6),
    (75, -1.5),  # 10:45: the short put is in the money
    (120, -0.7),
    (180, 1.2),
    (240, 3.4),  # 13:30: far above the short strike, TV nearly gone
    (300, 3.9),
    (390, 4.3),
    (400, 4.3),
)
# Per-minute standard deviation of the seeded noise, in dollars.
_NOISE_PER_MINUTE = 0.05


@dataclass(frozen=True)
class DemoFollower:
    """A follower of the demo, before it is given its gateway port."""

    id: str
    name: str
    account: str
    qty_multiplier: float
    max_qty_per_leg: int
    email: str
    description: str
    #: a fixed gateway port (``local up``); the demo picks free ports itself
    port: int | None = None
    #: starting cash of the follower's paper account at ibsim
    equity: float = ACCOUNT_EQUITY

    def follower(self, port: int, client_id: int = 1) -> Follower:
        return Follower.model_validate(
            {
                "_id": self.id,
                "name": self.name,
                "email": self.email,
                "account": self.account,
                "gateway": {"host": "127.0.0.1", "port": port, "client_id": client_id},
                "qty_multiplier": self.qty_multiplier,
                "max_qty_per_leg": self.max_qty_per_leg,
                "commission_pct": 20.0,
            }
        )


DEFAULT_FOLLOWERS: tuple[DemoFollower, ...] = (
    DemoFollower("anna", "Anna (small)", "DU1000001", 0.4, 10, "anna@example.com", "2 spreads"),
    DemoFollower("ben", "Ben (standard)", "DU1000002", 2.0, 20, "ben@example.com", "10 spreads"),
    DemoFollower(
        "carla",
        "Carla (small account)",
        "DU1000003",
        3.0,
        20,
        "carla@example.com",
        "15 spreads on a $5,000 account: more margin than it has",
        equity=SMALL_ACCOUNT_EQUITY,
    ),
)


def load_followers(path: Path) -> list[DemoFollower]:
    """Followers from a JSON/YAML list (``--followers``); missing fields get defaults.

    ``equity`` (default $100,000) is the starting cash of the follower's paper account.
    """
    text = path.read_text(encoding="utf-8")
    raw: Any
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    if isinstance(raw, dict):
        raw = raw.get("followers", [])
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of followers")
    result: list[DemoFollower] = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or "id" not in item:
            raise ValueError(f"{path}: follower #{index} needs at least an 'id'")
        fid = str(item["id"])
        result.append(
            DemoFollower(
                id=fid,
                name=str(item.get("name", fid)),
                account=str(item.get("account", f"DU{2000000 + index}")),
                qty_multiplier=float(item.get("qty_multiplier", 1.0)),
                max_qty_per_leg=int(item.get("max_qty_per_leg", 10)),
                email=str(item.get("email", f"{fid}@example.com")),
                description=str(item.get("description", "")),
                port=int(item["port"]) if item.get("port") else None,
                equity=_equity(path, fid, item.get("equity", ACCOUNT_EQUITY)),
            )
        )
    return result


def _equity(path: Path, fid: str, value: Any) -> float:
    try:
        equity = float(value)
    except (TypeError, ValueError):
        equity = math.nan
    if not (0 <= equity < math.inf):
        raise ValueError(f"{path}: follower {fid!r} needs a finite equity >= 0, got {value!r}")
    return equity


def account_equity(people: list[DemoFollower]) -> dict[str, float]:
    """Starting cash per paper account, for ibsim (``--listen PORT=ACCOUNT:EQUITY``)."""
    return {p.account: p.equity for p in people}


def default_trading_day(today: date | None = None) -> date:
    """The most recent full NYSE session on or before ``today`` (New York date)."""
    day = today or datetime.now(NEW_YORK).date()
    if not calendar.is_trading_day(day):
        day = calendar.previous_trading_day(day)
    while calendar.is_early_close(day):
        day = calendar.previous_trading_day(day)
    return day


def day_start(day: date, at: time = time(9, 26)) -> datetime:
    """When the demo's clock starts: shortly before the 09:27 signal."""
    return datetime.combine(day, at, tzinfo=NEW_YORK)


@dataclass(frozen=True)
class MarketPath:
    """The QQQ path of the day as (HH:MM, price) keypoints."""

    points: tuple[tuple[str, float], ...]

    def price_at(self, moment: time) -> float:
        minutes = moment.hour * 60 + moment.minute + moment.second / 60
        pts = [(_minutes(t), p) for t, p in self.points]
        if minutes <= pts[0][0]:
            return pts[0][1]
        for (m0, p0), (m1, p1) in itertools.pairwise(pts):
            if minutes <= m1:
                return p0 + (p1 - p0) * (minutes - m0) / (m1 - m0)
        return pts[-1][1]

    def scenario(self) -> dict[str, Any]:
        """The ibsim scenario (JSON-able): keypoints, its own noise off."""
        return {
            "spot": self.points[0][1],
            "walk_vol": 0.0,
            "noise": False,
            "atm_vol": ATM_VOL,
            "path": [[t, p] for t, p in self.points],
        }


def _minutes(text: str) -> int:
    hh, mm = text.split(":")
    return int(hh) * 60 + int(mm)


def _shape_at(minute: float) -> float:
    for (m0, v0), (m1, v1) in itertools.pairwise(_SHAPE):
        if minute <= m1:
            return v0 + (v1 - v0) * (minute - m0) / (m1 - m0)
    return _SHAPE[-1][1]


def market_path(seed: int) -> MarketPath:
    """The day's path for ``seed``: the shape plus a seeded walk, one point a minute."""
    rng = random.Random(f"spreadpilot-demo:{seed}")
    open_minute = 9 * 60 + 30
    points: list[tuple[str, float]] = []
    noise = 0.0
    for offset in range(-5, 401):
        if offset > 5:
            noise += rng.gauss(0.0, _NOISE_PER_MINUTE)
            # Pull the walk back towards the shape so that no seed loses the story.
            noise *= 0.985
        minute = open_minute + offset
        price = OPEN_SPOT + _shape_at(offset) + noise
        points.append((f"{minute // 60:02d}:{minute % 60:02d}", round(price, 2)))
    return MarketPath(tuple(points))


def scenario_path_from_file(path: Path) -> MarketPath:
    """The keypoints of a user's scenario file (to choose the signal's strikes).

    Raises ``ValueError`` (or a JSON/YAML error) naming the file when it is unusable.
    """
    text = path.read_text(encoding="utf-8")
    data: Any
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario is a mapping (spot, atm_vol, path, ...)")
    raw = data.get("path") or []
    points = tuple((str(t), float(p)) for t, p in raw if len(str(t)) <= 5 and ":" in str(t))
    if points:
        return MarketPath(points)
    spot = float(data.get("spot", OPEN_SPOT))
    return MarketPath((("09:25", spot), ("16:00", spot)))


@dataclass(frozen=True)
class DemoSignal:
    """The sheet row of the day."""

    trading_date: date
    strategy: str  # the sheet's word: Long (bull put) or Short (bear call)
    qty_per_leg: int
    strike_long: float
    strike_short: float


def signal_for(day: date, path: MarketPath) -> DemoSignal:
    """A bull put one strike below the 09:27 price (a dollar of credit or so)."""
    spot = path.price_at(time(9, 27))
    short = float(math.floor(spot) - 1)
    return DemoSignal(day, "Long", SIGNAL_QTY, short - SPREAD_WIDTH, short)


def sheet_rows(signal: DemoSignal) -> list[list[str]]:
    """The sheet as a person keeps it: a title, the header, yesterday's row, today's row."""
    day = signal.trading_date
    yesterday = calendar.previous_trading_day(day)

    def us(d: date) -> str:
        return f"{d.month}/{d.day}/{d.year}"

    def strike(value: float) -> str:
        return f"{value:g}"

    return [
        ["QQQ 0DTE signals", "", "", "", "", ""],
        ["Date", "Ticker", "Strategy", "Qty per leg", "Strike Long", "Strike Short"],
        [us(yesterday), "QQQ", "Short", str(signal.qty_per_leg), "489", "484"],
        [
            us(day),
            "QQQ",
            signal.strategy,
            str(signal.qty_per_leg),
            strike(signal.strike_long),
            strike(signal.strike_short),
        ],
    ]


def write_sheet(path: Path, signal: DemoSignal) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(sheet_rows(signal))


def write_scenario(path: Path, market: MarketPath) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(market.scenario(), indent=1), encoding="utf-8")


def end_of_day(day: date) -> datetime:
    """When the demo is over: just after the 16:30 daily rollup."""
    return datetime.combine(day, time(16, 30), tzinfo=NEW_YORK) + timedelta(seconds=30)
