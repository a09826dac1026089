"""The NYSE calendar: holidays, early closes, sessions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from spreadpilot.domain.calendar import (
    NEW_YORK,
    is_early_close,
    is_market_open,
    is_trading_day,
    market_close,
    market_open,
    next_trading_day,
    previous_trading_day,
    trading_days,
)

THANKSGIVING = date(2026, 11, 26)
BLACK_FRIDAY = date(2026, 11, 27)


def test_thanksgiving_is_closed() -> None:
    assert not is_trading_day(THANKSGIVING)
    with pytest.raises(ValueError):
        market_open(THANKSGIVING)
    with pytest.raises(ValueError):
        market_close(THANKSGIVING)
    assert not is_market_open(datetime(2026, 11, 26, 11, 0, tzinfo=NEW_YORK))


def test_day_after_thanksgiving_closes_at_13() -> None:
    assert is_trading_day(BLACK_FRIDAY) and is_early_close(BLACK_FRIDAY)
    assert market_open(BLACK_FRIDAY).time() == time(9, 30)
    assert market_close(BLACK_FRIDAY).time() == time(13, 0)
    assert market_close(BLACK_FRIDAY).tzinfo is not None
    assert is_market_open(datetime(2026, 11, 27, 12, 59, tzinfo=NEW_YORK))
    assert not is_market_open(datetime(2026, 11, 27, 13, 0, tzinfo=NEW_YORK))


def test_regular_day() -> None:
    day = date(2026, 3, 2)
    assert is_trading_day(day) and not is_early_close(day)
    assert market_close(day).time() == time(16, 0)
    assert not is_market_open(datetime(2026, 3, 2, 9, 29, tzinfo=NEW_YORK))
    assert is_market_open(datetime(2026, 3, 2, 9, 30, tzinfo=NEW_YORK))
    assert is_market_open(datetime(2026, 3, 2, 20, 59, tzinfo=UTC))  # 15:59 EST
    assert not is_market_open(datetime(2026, 3, 2, 16, 0, tzinfo=NEW_YORK))
    with pytest.raises(ValueError):
        is_market_open(datetime(2026, 3, 2, 10, 0))


def test_weekends_and_sessions_in_range() -> None:
    assert not is_trading_day(date(2026, 11, 28))  # Saturday
    days = trading_days(date(2026, 11, 23), date(2026, 11, 30))
    assert days == [date(2026, 11, d) for d in (23, 24, 25, 27, 30)]
    assert trading_days(date(2026, 12, 1), date(2026, 11, 1)) == []


def test_next_and_previous_trading_day() -> None:
    assert next_trading_day(date(2026, 11, 25)) == BLACK_FRIDAY
    assert previous_trading_day(BLACK_FRIDAY) == date(2026, 11, 25)
    assert next_trading_day(BLACK_FRIDAY) == date(2026, 11, 30)
    assert previous_trading_day(date(2026, 11, 30)) == BLACK_FRIDAY
