"""P&L rollups through functions-framework against PostgreSQL, with hand-computed figures.

The fills are what the sidecar stores from IB (per leg, $0.65 a contract), the
intraday snapshots what pnl_mtm stores every 30 s; the functions run at their
scheduled moments on a simulated clock.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fn_harness import FunctionEnv
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.clock import NEW_YORK
from spreadpilot.domain.followers import Follower
from spreadpilot.storage.fills import ExecutionFill, FillsRepository
from spreadpilot.storage.followers import FollowersRepository
from spreadpilot.storage.migrate import migrate
from spreadpilot.storage.pnl import DailyPnl, IntradaySnapshot, PnlRepository

D = Decimal
DAY = date(2025, 3, 11)  # a Tuesday
PREVIOUS = date(2025, 3, 10)


@pytest.fixture
def pg(pg_dsn: str) -> Any:
    db = Postgres(pg_dsn)
    migrate(db)
    yield db
    db.close()


def at(day: date, hhmm: str) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":")[:2])
    second = int(hhmm.split(":")[2]) if hhmm.count(":") == 2 else 0
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NEW_YORK)


def clock_env(moment: datetime) -> dict[str, str]:
    return {"SIM_START": moment.isoformat(), "SIM_SPEED": "1.0", "SIM_ANCHOR": repr(time.time())}


def follower(fid: str, pct: float = 20.0, currency: str = "USD") -> Follower:
    return Follower.model_validate(
        {
            "_id": fid,
            "name": fid,
            "email": f"{fid}@example.com",
            "iban": "DE89370400440532013000",
            "gateway": {"host": "127.0.0.1", "port": 4002, "client_id": 3},
            "account": "DU7654321",
            "commission_pct": pct,
            "commission_currency": currency,
        }
    )


class Leg:
    """Writes one IB execution and its commission report, as the sidecar stores them."""

    def __init__(self, fills: FillsRepository, fid: str) -> None:
        self.fills = fills
        self.fid = fid
        self.n = 0

    def __call__(
        self, day: date, hhmm: str, side: str, qty: int, right: str, strike: int, price: str
    ) -> None:
        self.n += 1
        exec_id = f"{self.fid}-{day:%m%d}-{self.n:03d}"
        self.fills.upsert_execution(
            ExecutionFill(
                exec_id=exec_id,
                follower_id=self.fid,
                account="DU7654321",
                symbol="QQQ",
                sec_type="OPT",
                side=side,  # type: ignore[arg-type]
                qty=D(qty),
                price=D(price),
                exec_time=at(day, hhmm),
                trading_date=day,
                con_id=1000 + strike * 2 + (right == "C"),
                right=right,  # type: ignore[arg-type]
                strike=D(strike),
                expiry=day,
                multiplier=100,
            )
        )
        self.fills.attach_commission(exec_id, D("0.65") * qty, "USD")


def snapshot(fid: str, day: date, hhmm: str, realized: str, unrealized: str) -> IntradaySnapshot:
    return IntradaySnapshot(
        follower_id=fid,
        snapshot_time=at(day, hhmm),
        trading_date=day,
        realized=D(realized),
        unrealized=D(unrealized),
        total=D(realized) + D(unrealized),
    )


def test_daily_rollup_two_spreads_one_liquidated_with_commissions(
    function_env: FunctionEnv, pg: Any, mongo_db: Any
) -> None:
    FollowersRepository(mongo_db).add(follower("f1"))
    leg = Leg(FillsRepository(pg), "f1")
    # Spread A, bull put 440/445 x2, opened for a 0.80 credit, liquidated at TV CRITICAL.
    leg(DAY, "09:31", "SLD", 2, "P", 445, "1.20")
    leg(DAY, "09:31", "BOT", 2, "P", 440, "0.40")
    # Spread B, bear call 450/455 x1, opened for 0.70, left to expire worthless.
    leg(DAY, "09:32", "SLD", 1, "C", 450, "1.00")
    leg(DAY, "09:32", "BOT", 1, "C", 455, "0.30")
    leg(DAY, "11:00", "BOT", 2, "P", 445, "2.50")  # the liquidation combo's legs
    leg(DAY, "11:00", "SLD", 2, "P", 440, "0.90")
    # The previous day was never rolled up (a missed 16:30 run): one round trip.
    leg(PREVIOUS, "09:35", "SLD", 1, "P", 430, "1.10")
    leg(PREVIOUS, "09:35", "BOT", 1, "P", 425, "0.35")
    leg(PREVIOUS, "14:00", "BOT", 1, "P", 430, "0.60")
    leg(PREVIOUS, "14:00", "SLD", 1, "P", 425, "0.15")

    repo = PnlRepository(pg)
    # What pnl_mtm stored during the day (realized is net of commissions paid so far).
    for snap in (
        snapshot("f1", DAY, "10:00", "-3.90", "30"),  # opening commissions: 6 x 0.65
        snapshot("f1", DAY, "10:59:30", "-3.90", "-120"),
        snapshot("f1", DAY, "12:00", "-166.50", "20"),
        snapshot("f1", DAY, "15:59:30", "-166.50", "69"),
    ):
        repo.insert_intraday(snap)

    fn = function_env.start("pnl_rollup_daily", **clock_env(at(DAY, "16:30")))
    first = fn.post().json()
    assert first["rolled"] == ["f1:2025-03-10", "f1:2025-03-11"], fn.logs()

    day = repo.get_daily("f1", DAY)
    assert day is not None and day.finalized
    # A: short P445 (1.20 - 2.50) x 2 x 100 = -260, long P440 (0.90 - 0.40) x 2 x 100 = +100.
    # Commissions: 10 contracts (A: 4 to open, 4 to close; B: 2) x 0.65 = 6.50.
    assert day.commissions == D("6.50")
    assert day.realized == D("-166.50")  # -160 gross - 6.50
    assert day.unrealized == D("69")  # B at the last marks: +98 on the short, -29 on the long
    assert day.total == day.closing_pnl == D("-97.50")
    assert day.opening_pnl == D("26.10")
    assert day.max_profit == D("26.10")
    assert day.max_drawdown == D("172.60")  # from +26.10 down to -146.50
    assert (day.trades, day.volume) == (6, D(10))

    previous = repo.get_daily("f1", PREVIOUS)
    assert previous is not None and previous.finalized
    # (1.10 - 0.60) x 100 + (0.15 - 0.35) x 100 = 30, minus 4 x 0.65.
    assert previous.total == previous.realized == D("27.40")
    assert previous.commissions == D("2.60")

    # Idempotent: a second run finds nothing left and changes nothing.
    assert fn.post().json()["rolled"] == []
    assert repo.get_daily("f1", DAY) == day


def test_daily_rollup_before_the_close_defers_today(
    function_env: FunctionEnv, pg: Any, mongo_db: Any
) -> None:
    leg = Leg(FillsRepository(pg), "f2")
    leg(DAY, "09:31", "SLD", 1, "P", 445, "1.20")
    fn = function_env.start("pnl_rollup_daily", **clock_env(at(DAY, "15:00")))
    report = fn.post().json()
    assert report == {"rolled": [], "deferred": ["f2:2025-03-11"]}
    assert PnlRepository(pg).get_daily("f2", DAY) is None


def daily(fid: str, day: date, total: str, trades: int = 4) -> DailyPnl:
    value = D(total)
    return DailyPnl(
        follower_id=fid,
        trading_date=day,
        opening_pnl=D(0),
        closing_pnl=value,
        realized=value,
        unrealized=D(0),
        total=value,
        trades=trades,
        volume=D(trades),
        commissions=D("2.60"),
        max_drawdown=D(0),
        max_profit=max(value, D(0)),
        finalized=True,
    )


def test_monthly_rollup_and_commission(function_env: FunctionEnv, pg: Any, mongo_db: Any) -> None:
    followers = FollowersRepository(mongo_db)
    followers.add(follower("win", pct=20))
    followers.add(follower("lose", pct=20))
    followers.add(follower("eur", pct=25, currency="EUR"))
    repo = PnlRepository(pg)
    for row in (
        daily("win", date(2025, 2, 3), "150.00"),
        daily("win", date(2025, 2, 4), "-80.00"),
        daily("win", date(2025, 2, 5), "40.50"),
        daily("win", date(2025, 2, 6), "-20.25"),
        daily("win", date(2025, 1, 30), "10.00"),  # January never rolled up: caught up
        daily("lose", date(2025, 2, 3), "-50.00"),
        daily("lose", date(2025, 2, 4), "20.00"),
        daily("eur", date(2025, 2, 10), "100.00"),
        daily("win", date(2025, 3, 3), "999.00"),  # March is not over: not rolled
    ):
        repo.upsert_daily(row)

    fn = function_env.start("pnl_rollup_monthly", **clock_env(at(date(2025, 3, 1), "00:10")))
    report = fn.post().json()
    assert sorted(report["rolled"]) == ["eur:2025-02", "lose:2025-02", "win:2025-01", "win:2025-02"]

    feb = repo.get_monthly("win", date(2025, 2, 1))
    assert feb is not None
    assert feb.total == D("90.25")  # 150 - 80 + 40.50 - 20.25
    assert (feb.trading_days, feb.winning_days, feb.losing_days) == (4, 2, 2)
    assert (feb.best_day, feb.best_day_date) == (D("150.00"), date(2025, 2, 3))
    assert (feb.worst_day, feb.worst_day_date) == (D("-80.00"), date(2025, 2, 4))
    assert (feb.trades, feb.commissions) == (16, D("10.40"))

    win = repo.get_commission("win", date(2025, 2, 1))
    assert win is not None
    assert (win.commission_amount, win.currency, win.payable) == (D("18.05"), "USD", True)
    assert (win.iban, win.email) == ("DE89370400440532013000", "win@example.com")

    lose = repo.get_commission("lose", date(2025, 2, 1))
    assert lose is not None
    assert lose.pnl == D("-30.00")
    assert (lose.commission_amount, lose.payable) == (D("0.00"), False)

    # A EUR-billed follower with no conversion rate configured is billed in the
    # P&L's currency, labelled USD: never a USD figure called EUR.
    eur = repo.get_commission("eur", date(2025, 2, 1))
    assert eur is not None
    assert (eur.commission_amount, eur.currency, eur.fx_rate) == (D("25.00"), "USD", None)

    january = repo.get_monthly("win", date(2025, 1, 1))
    assert january is not None and january.total == D("10.00")
    assert repo.get_monthly("win", date(2025, 3, 1)) is None

    assert fn.post().json()["rolled"] == []  # idempotent


def test_monthly_commission_with_conversion_rate(
    function_env: FunctionEnv, pg: Any, mongo_db: Any
) -> None:
    FollowersRepository(mongo_db).add(follower("eur", pct=25, currency="EUR"))
    PnlRepository(pg).upsert_daily(daily("eur", date(2025, 2, 10), "100.00"))
    fn = function_env.start(
        "pnl_rollup_monthly",
        COMMISSION_FX_RATE="0.92",
        **clock_env(at(date(2025, 3, 1), "00:10")),
    )
    assert fn.post().json()["rolled"] == ["eur:2025-02"]
    eur = PnlRepository(pg).get_commission("eur", date(2025, 2, 1))
    assert eur is not None
    assert (eur.commission_amount, eur.currency, eur.fx_rate) == (D("23.00"), "EUR", D("0.92"))
    assert (eur.pnl, eur.pnl_currency) == (D("100.00"), "USD")
