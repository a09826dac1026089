"""Everything the report shows, read back from where the system wrote it.

The report is evidence, not a second computation: executions come from
MongoDB, fills and P&L from PostgreSQL, alerts (and the time-value checks,
which travel as TV_* alerts) from the local alert sink. The end-to-end test
compares the report's figures with these same stores.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from spreadpilot.demo.scenario import DemoSignal
from spreadpilot.local.sinks import read_alerts
from spreadpilot.local.stack import StackConfig
from spreadpilot.storage.fills import FillRow
from spreadpilot.storage.pnl import DailyPnl, IntradaySnapshot

TV_TYPES = ("TV_SAFE", "TV_RISK", "TV_CRITICAL")


@dataclass(frozen=True)
class ExecutionView:
    """One follower's execution of the day's signal."""

    follower_id: str
    state: str
    qty: int | None
    filled_qty: int
    rung: int | None
    fill_credit: float | None
    mid_credit: float | None
    natural_credit: float | None
    initial_limit: float | None
    final_limit: float | None
    ladder: list[float]  # credit asked per rung, as planned
    rung_times: list[datetime]  # when each rung started (simulated)
    error: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class TvPoint:
    at: datetime
    spread_id: str
    tv: float
    status: str


@dataclass
class FollowerDay:
    follower_id: str
    name: str
    account: str
    qty_multiplier: float
    execution: ExecutionView | None
    fills: list[FillRow] = field(default_factory=list)
    intraday: list[IntradaySnapshot] = field(default_factory=list)
    daily: DailyPnl | None = None
    tv: list[TvPoint] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pnl(self) -> Decimal | None:
        """The day's P&L as finalized by the daily rollup (None if not rolled up)."""
        return self.daily.total if self.daily is not None else None

    @property
    def people_alerts(self) -> list[dict[str, Any]]:
        """Alerts that reach people: everything but unchanged TV statuses (INFO repeats)."""
        return [a for a in self.alerts if not is_routine_tv(a)]

    @property
    def liquidated(self) -> bool:
        return any(a["type"] == "TV_LIQUIDATED" for a in self.alerts)


@dataclass
class DemoData:
    trading_date: date
    signal: DemoSignal
    followers: list[FollowerDay]
    alerts: list[dict[str, Any]]
    settings: dict[str, Any]

    def follower(self, follower_id: str) -> FollowerDay:
        for day in self.followers:
            if day.follower_id == follower_id:
                return day
        raise KeyError(follower_id)


def is_routine_tv(alert: dict[str, Any]) -> bool:
    """A TV status repeated unchanged (published as INFO every check)."""
    return alert.get("type") in TV_TYPES and not (alert.get("params") or {}).get("changed", True)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def execution_view(record: Any) -> ExecutionView:
    """An ``ExecutionRecord`` as the report needs it."""
    data: dict[str, Any] = dict(record.data)
    ladder = [float(r["credit"]) for r in data.get("ladder") or [] if "credit" in r]
    rung_times: list[datetime] = []
    for event in record.events:
        detail = event.detail or {}
        starts_rung = "rung" in detail and ("limit" in detail or event.kind == "transition")
        if starts_rung and len(rung_times) <= int(detail["rung"]):
            rung_times.append(event.at)
    fill_credit = _float(data.get("fill_credit"))
    if fill_credit is None and record.fill_price is not None:
        fill_credit = -float(record.fill_price) if record.fill_price < 0 else record.fill_price
    return ExecutionView(
        follower_id=record.follower_id,
        state=record.state.value,
        qty=record.qty,
        filled_qty=record.filled_qty,
        rung=record.rung,
        fill_credit=fill_credit,
        mid_credit=_float(data.get("mid_credit")),
        natural_credit=_float(data.get("natural_credit")),
        initial_limit=_float(data.get("initial_limit")),
        final_limit=record.limit_price,
        ladder=ladder,
        rung_times=rung_times,
        error=record.error,
        data=data,
    )


def collect(config: StackConfig, day: date, signal: DemoSignal) -> DemoData:
    """Read the day back from MongoDB, PostgreSQL and the alert sink file."""
    from spreadpilot.adapters.mongo import connect, database
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.executions import ExecutionsRepository
    from spreadpilot.storage.fills import FillsRepository
    from spreadpilot.storage.followers import FollowersRepository
    from spreadpilot.storage.pnl import PnlRepository

    client = connect(config.mongo_uri, timeout_ms=5000)
    try:
        mdb = database(client, config.mongo_db)
        followers = FollowersRepository(mdb).list_all()
        records = ExecutionsRepository(mdb).list_for_date(day)
    finally:
        client.close()
    executions = {r.follower_id: execution_view(r) for r in records}

    pg = Postgres(config.pnl_database_url)
    fills_by: dict[str, list[FillRow]] = defaultdict(list)
    for row in FillsRepository(pg).list_for_date(day):
        fills_by[row.follower_id].append(row)
    pnl = PnlRepository(pg)

    alerts = read_alerts(config.alerts_path)
    alerts.sort(key=lambda a: str(a.get("created_at")))
    by_follower: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        if alert.get("follower_id"):
            by_follower[str(alert["follower_id"])].append(alert)

    days: list[FollowerDay] = []
    for follower in sorted(followers, key=lambda f: f.id):
        mine = by_follower.get(follower.id, [])
        tv = [
            TvPoint(
                at=_when(a["created_at"]) or datetime.min,
                spread_id=str((a.get("params") or {}).get("spread_id") or "spread"),
                tv=float((a.get("params") or {})["tv"]),
                status=str(a["type"]).removeprefix("TV_"),
            )
            for a in mine
            if a.get("type") in TV_TYPES and (a.get("params") or {}).get("tv") is not None
        ]
        days.append(
            FollowerDay(
                follower_id=follower.id,
                name=follower.name,
                account=follower.account,
                qty_multiplier=follower.qty_multiplier,
                execution=executions.get(follower.id),
                fills=fills_by.get(follower.id, []),
                intraday=pnl.intraday_for_day(follower.id, day),
                daily=pnl.get_daily(follower.id, day),
                tv=sorted(tv, key=lambda p: p.at),
                alerts=mine,
            )
        )
    return DemoData(
        trading_date=day,
        signal=signal,
        followers=days,
        alerts=alerts,
        settings={"tv_critical": 0.10, "tv_risk": 1.00},
    )
