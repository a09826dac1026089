"""The NYSE trading calendar (holidays and early closes).

Backed by ``exchange_calendars`` (XNYS): maintained, rules-based for future
years, and it carries NYSE's early closes (13:00 ET), which a hand-written
holiday list tends to get wrong. The calendar object is built once and cached;
every function here is a pure function of its arguments.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)


@lru_cache(maxsize=1)
def _xnys() -> Any:
    # exchange_calendars trips pandas deprecation warnings while it builds the
    # calendar; they are about its internals, not ours, so keep them out of logs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar("XNYS", start="2015-01-01", end="2035-12-31")


def is_trading_day(day: date) -> bool:
    """True when NYSE holds a session on ``day``."""
    return bool(_xnys().is_session(pd.Timestamp(day)))


def market_open(day: date) -> datetime:
    """Session open in New York time. Raises ValueError on a non-trading day."""
    if not is_trading_day(day):
        raise ValueError(f"{day.isoformat()} is not an NYSE trading day")
    opened = _xnys().session_open(pd.Timestamp(day)).to_pydatetime()
    return opened.astimezone(NEW_YORK)  # type: ignore[no-any-return]


def market_close(day: date) -> datetime:
    """Session close in New York time (16:00, or 13:00 on early-close days)."""
    if not is_trading_day(day):
        raise ValueError(f"{day.isoformat()} is not an NYSE trading day")
    closed = _xnys().session_close(pd.Timestamp(day)).to_pydatetime()
    return closed.astimezone(NEW_YORK)  # type: ignore[no-any-return]


def is_early_close(day: date) -> bool:
    return is_trading_day(day) and market_close(day).time() < REGULAR_CLOSE


def is_market_open(moment: datetime) -> bool:
    """True when ``moment`` (timezone-aware) falls inside a regular session."""
    if moment.tzinfo is None:
        raise ValueError("is_market_open needs a timezone-aware datetime")
    local = moment.astimezone(NEW_YORK)
    day = local.date()
    if not is_trading_day(day):
        return False
    return market_open(day) <= local < market_close(day)


def trading_days(first: date, last: date) -> list[date]:
    """Every NYSE session date in [first, last]."""
    if last < first:
        return []
    sessions = _xnys().sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))
    return [ts.date() for ts in sessions]


def next_trading_day(day: date) -> date:
    """The first session strictly after ``day``."""
    nxt = _xnys().date_to_session(pd.Timestamp(day) + pd.Timedelta(days=1), direction="next")
    return nxt.date()  # type: ignore[no-any-return]


def previous_trading_day(day: date) -> date:
    """The last session strictly before ``day``."""
    prev = _xnys().date_to_session(pd.Timestamp(day) - pd.Timedelta(days=1), direction="previous")
    return prev.date()  # type: ignore[no-any-return]
