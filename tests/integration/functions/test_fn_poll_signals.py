"""poll_signals through functions-framework, with unmodified gspread reading the
local Sheets API v4 stand-in, MongoDB (ledger), Redis and the Pub/Sub fake."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fn_harness import FunctionEnv, Topic
from spreadpilot.clock import NEW_YORK
from spreadpilot.domain.signals import Signal
from spreadpilot.standins.sheets import SheetsStandIn

SHEET_ID = "1SpreadPilotSignalsSheet"


@pytest.fixture
def sheets() -> Iterator[SheetsStandIn]:
    server = SheetsStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def trading_day() -> date:
    """A random weekday far from other tests' days, so ledger ids and markers differ."""
    day = date(2031, 1, 1) + timedelta(days=random.randrange(0, 8 * 365))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def us(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


@pytest.fixture
def poller_env(function_env: FunctionEnv, sheets: SheetsStandIn, trading_day: date) -> FunctionEnv:
    start = datetime.combine(trading_day, datetime.min.time().replace(hour=9, minute=27))
    function_env.set(
        GOOGLE_SHEET_URL=f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid=0",
        GOOGLE_SHEETS_API_KEY="test-api-key",
        SHEETS_API_BASE=sheets.base_url,
        POLLING_INTERVAL_SECONDS="0.2",
        SIM_START=start.replace(tzinfo=NEW_YORK).isoformat(),
        SIM_SPEED="1.0",
        SIM_ANCHOR=repr(time.time()),
    )
    return function_env


def english_rows(
    day: date, *, strike_long: str = "445", strike_short: str = "450"
) -> list[list[str]]:
    yesterday = day - timedelta(days=1)
    return [
        ["QQQ 0DTE signals", "", "", "", ""],
        ["updated every morning", "", "", "", ""],
        [" DATE ", "Ticker", " strategy", "Qty per leg", "Strike Long", "Strike Short"],
        [us(yesterday), "QQQ", "Short", "5", "460", "455"],
        ["note: holiday tomorrow", "", "", "", "", ""],
        ["", "", "", "", "", ""],
        ["junk", "???", "Long", "x", "y", "z"],
        [us(day), "QQQ", "Long", "10", strike_long, strike_short],
    ]


def italian_rows(day: date) -> list[list[str]]:
    return [
        ["Segnali", "", "", "", "", "", "", ""],
        [
            "Data",
            "Ticker",
            "Strategia",
            "Quantità per Leg",
            "Buy Put",
            "Sell Put",
            "Sell Call",
            "Buy Call",
        ],
        [us(day - timedelta(days=1)), "QQQ", "Long", "3", "440", "445", "-", "-"],
        [us(day), "QQQ", "Short", "7", "-", "-", "452", "457"],
    ]


def signals_in(messages: list[Any]) -> list[Signal]:
    return [Signal.from_json(m.data) for m in messages]


def alert_types(messages: list[Any]) -> list[str]:
    return [json.loads(m.data)["type"] for m in messages]


@pytest.fixture
def signal_topic(topics: Callable[[str], Topic]) -> Topic:
    return topics("signals")


@pytest.fixture
def alert_topic(topics: Callable[[str], Topic]) -> Topic:
    return topics("alerts")


def test_english_sheet_publishes_one_message_across_invocations(
    poller_env: FunctionEnv,
    sheets: SheetsStandIn,
    trading_day: date,
    signal_topic: Topic,
    alert_topic: Topic,
) -> None:
    sheets.set_values(SHEET_ID, english_rows(trading_day))
    fn = poller_env.start("poll_signals")

    first = fn.post({"duration_seconds": 1.5})
    assert first.status_code == 200, fn.logs()
    report = first.json()
    assert report["polls"] >= 3, report
    assert len(report["published"]) == 1
    second = fn.post({"duration_seconds": 0.5})
    assert second.json()["published"] == []

    published = signal_topic.pull()
    assert len(published) == 1
    signal = signals_in(published)[0]
    assert published[0].attributes["signal_id"] == signal.signal_id
    assert (signal.trading_date, signal.strategy.value) == (trading_day, "bull_put")
    assert (signal.strike_long, signal.strike_short, signal.qty_per_leg) == (445.0, 450.0, 10)
    assert signal.row_number == 8
    # The junk row and yesterday's row are not today's: no alert at all.
    assert alert_topic.pull(wait=0.5) == []
    # One read per poll after the two metadata reads of the first open.
    assert sheets.value_reads(SHEET_ID) == report["polls"] + second.json()["polls"]


def test_italian_sheet_with_dash_cells(
    poller_env: FunctionEnv, sheets: SheetsStandIn, trading_day: date, signal_topic: Topic
) -> None:
    sheets.set_values(SHEET_ID, italian_rows(trading_day))
    fn = poller_env.start("poll_signals")
    assert fn.post({"duration_seconds": 0.6}).status_code == 200, fn.logs()
    [signal] = signals_in(signal_topic.pull())
    assert signal.strategy.value == "bear_call"
    assert (signal.strike_long, signal.strike_short, signal.qty_per_leg) == (457.0, 452.0, 7)


def test_row_edited_after_trading_raises_signal_changed_and_no_second_publish(
    poller_env: FunctionEnv,
    sheets: SheetsStandIn,
    trading_day: date,
    signal_topic: Topic,
    alert_topic: Topic,
) -> None:
    sheets.set_values(SHEET_ID, english_rows(trading_day))
    fn = poller_env.start("poll_signals")
    assert fn.post({"duration_seconds": 0.3}).json()["published"]

    sheets.set_values(SHEET_ID, english_rows(trading_day, strike_long="444", strike_short="449"))
    report = fn.post({"duration_seconds": 1.0}).json()
    assert report["published"] == []
    assert len(report["changed"]) == 1

    assert len(signal_topic.pull()) == 1
    alerts = alert_topic.pull()
    assert alert_types(alerts) == ["SIGNAL_CHANGED"]  # once, although seen every poll
    params = json.loads(alerts[0].data)["params"]
    assert params["strike_long"] == 444.0


def test_429_then_success_keeps_the_window(
    poller_env: FunctionEnv, sheets: SheetsStandIn, trading_day: date, signal_topic: Topic
) -> None:
    sheets.set_values(SHEET_ID, english_rows(trading_day))
    fn = poller_env.start("poll_signals")
    sheets.faults.fail_next(1, status=429)
    report = fn.post({"duration_seconds": 2.0}).json()
    assert report["read_failures"] == 1
    assert len(report["published"]) == 1
    assert [r.status for r in sheets.requests if r.status == 429] == [429]
    assert len(signal_topic.pull()) == 1


def test_5xx_burst_then_success(
    poller_env: FunctionEnv, sheets: SheetsStandIn, trading_day: date, signal_topic: Topic
) -> None:
    sheets.set_values(SHEET_ID, english_rows(trading_day))
    fn = poller_env.start("poll_signals")
    sheets.faults.fail_next(2, status=503)
    report = fn.post({"duration_seconds": 3.0}).json()
    assert report["read_failures"] == 2
    assert len(report["published"]) == 1
    assert len(signal_topic.pull()) == 1


def test_invalid_row_alerts_and_publishes_nothing(
    poller_env: FunctionEnv,
    sheets: SheetsStandIn,
    trading_day: date,
    signal_topic: Topic,
    alert_topic: Topic,
) -> None:
    rows = english_rows(trading_day, strike_long="450", strike_short="445")  # wrong side
    sheets.set_values(SHEET_ID, rows)
    fn = poller_env.start("poll_signals")
    report = fn.post({"duration_seconds": 0.8}).json()
    assert report["published"] == []
    assert len(report["invalid"]) == 1 and "row 8" in report["invalid"][0]
    assert signal_topic.pull(wait=0.5) == []
    alerts = alert_topic.pull()
    assert alert_types(alerts) == ["SIGNAL_INVALID"]
    assert json.loads(alerts[0].data)["params"]["row"] == 8


def test_csv_source_same_parser(
    poller_env: FunctionEnv, trading_day: date, signal_topic: Topic, tmp_path: Any
) -> None:
    import csv

    path = tmp_path / "signals.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(italian_rows(trading_day))
    fn = poller_env.start("poll_signals", SHEET_CSV_PATH=str(path))
    assert len(fn.post({"duration_seconds": 0.3}).json()["published"]) == 1
    [signal] = signals_in(signal_topic.pull())
    assert signal.strategy.value == "bear_call"
