"""Hypothesis-generated sheets through the real poll_signals function.

Whatever a person (or an accident) puts in the signal sheet, the poller must
answer 200 without an exception, and publish a signal exactly when the domain
parser accepts the sheet: a valid row may trade, an invalid one never does.
The sheet is served by the Sheets API v4 stand-in and read by unmodified
gspread inside one long-lived functions-framework process (starting one per
example would cost seconds each); every example re-seeds the sheet and
forgets the trading day in the ledger and the publication marker, so each
example is judged on its own.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from fn_harness import FunctionEnv, FunctionServer, Topic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spreadpilot.clock import NEW_YORK
from spreadpilot.domain.signals import SheetParseResult, Signal, SignalLimits, parse_sheet
from spreadpilot.standins.sheets import SheetsStandIn

SHEET_ID = "1BadInputSignalsSheet"
LIMITS = SignalLimits()  # the defaults; the function is configured to the same below
MAX_EXAMPLES = 40


# ---------------------------------------------------------------- the stack


@dataclass
class Poller:
    """One poll_signals process, its sheet and its topics."""

    fn: FunctionServer
    sheets: SheetsStandIn
    signals: Topic
    alerts: Topic
    today: date
    mongo_db: Any
    redis: Any
    markers: set[str] = field(default_factory=set)

    def forget_today(self) -> None:
        """A fresh ledger day and no publication markers: the next sheet stands alone."""
        self.mongo_db["signals"].delete_many({"_id": self.today.isoformat()})
        if self.markers:
            self.redis.delete(*self.markers)


def _far_weekday() -> date:
    """A random weekday far from any other test's, so ledger ids and markers differ."""
    day = date(2050, 1, 1) + timedelta(days=random.randrange(0, 20 * 365))
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@pytest.fixture
def poller(
    function_env: FunctionEnv, pubsub_clients: tuple[Any, Any], mongo_db: Any, redis_client: Any
) -> Iterator[Poller]:
    sheets = SheetsStandIn().start()
    today = _far_weekday()
    start = datetime.combine(today, datetime.min.time().replace(hour=9, minute=27))
    publisher, subscriber = pubsub_clients
    signals = Topic(function_env.project_id, "signals", publisher, subscriber).create()
    alerts = Topic(function_env.project_id, "alerts", publisher, subscriber).create()
    fn = function_env.start(
        "poll_signals",
        GOOGLE_SHEET_URL=f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid=0",
        GOOGLE_SHEETS_API_KEY="test-api-key",
        SHEETS_API_BASE=sheets.base_url,
        POLLING_INTERVAL_SECONDS="1.0",
        MAX_SPREAD_WIDTH=str(LIMITS.max_spread_width),
        MAX_QTY_PER_LEG=str(LIMITS.max_qty_per_leg),
        STRIKE_INCREMENT=str(LIMITS.strike_increment),
        SIM_START=start.replace(tzinfo=NEW_YORK).isoformat(),
        SIM_SPEED="1.0",
        SIM_ANCHOR=repr(time.time()),
    )
    state = Poller(fn, sheets, signals, alerts, today, mongo_db, redis_client)
    yield state
    state.forget_today()
    sheets.stop()


# ---------------------------------------------------------------- sheet strategies


def us(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


_HUGE = [
    "1e999999",
    "-1e999999",
    "9" * 400,
    "0." + "0" * 300 + "1",
    "NaN",
    "Infinity",
    "-inf",
    "sNaN",
    "1E+400",
    "0x1C2",
    "1_000",
    "+450",
    "-0",
    "450,5",
    "4,50,0",
    "４５０",  # full-width digits: Decimal reads them
    "٤٥٠",  # Arabic-Indic digits
    "4 5 0",
    "450.0000000000000000001",
    "Ⅳ",
    "\u200b450",
    "x" * 20_000,
]


def _junk() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=25),
        st.sampled_from(_HUGE),
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.just(""),
        st.sampled_from(["-", "–", "—", " ", "\t", "\n"]),
    )


def _date_cell(today: date) -> st.SearchStrategy[str]:
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    return st.one_of(
        st.sampled_from(
            [
                today.isoformat(),
                us(today),
                f" {us(today)} ",
                f"{today.month:02d}/{today.day:02d}/{today.year}",
                f"{today.year}-{today.month}-{today.day}",
                yesterday.isoformat(),
                us(tomorrow),
                f"{today.day}/{today.month}/{today.year}",  # European order
                f"{today.isoformat()}T09:27:00",
                f"2/30/{today.year}",
                f"13/45/{today.year}",
                "0000-00-00",
            ]
        ),
        st.dates().map(lambda d: d.isoformat()),
        st.dates().map(us),
        _junk(),
    )


def _mostly(valid: st.SearchStrategy[str], invalid: st.SearchStrategy[str]) -> Any:
    """``valid`` nine times in ten: enough rows survive every check to publish."""
    return st.integers(0, 9).flatmap(lambda k: invalid if k == 0 else valid)


def _valid_today(today: date) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            today.isoformat(),
            us(today),
            f" {us(today)} ",
            f"{today.month:02d}/{today.day:02d}/{today.year}",
            f"{today.year}-{today.month}-{today.day}",
        ]
    )


def _strikes(draw: st.DrawFn, view: str) -> tuple[str, str]:
    """(long, short) on the right side for ``view`` within the width, or sometimes not."""
    short = draw(st.integers(min_value=380, max_value=520))
    width = draw(_mostly(st.integers(1, 10), st.sampled_from([0, 11, 15, -1, -5])))
    long = short - width if view == "put" else short + width
    as_text = st.sampled_from(["{}", "{}.0", " {} ", "{},0"])
    long_cell = draw(as_text).format(long)
    short_cell = draw(as_text).format(short)
    if draw(st.integers(0, 9)) == 0:
        long_cell = draw(st.one_of(st.decimals(350, 550, places=2).map(str), _junk()))
    if draw(st.integers(0, 9)) == 0:
        short_cell = draw(st.one_of(st.decimals(350, 550, places=2).map(str), _junk()))
    return long_cell, short_cell


_HEADERS = {
    "english_pair": ["Date", "Ticker", "Strategy", "Qty per leg", "Strike Long", "Strike Short"],
    "english_legs": [
        "Date",
        "Ticker",
        "Strategy",
        "Qty",
        "Buy Put",
        "Sell Put",
        "Sell Call",
        "Buy Call",
    ],
    "italian": [
        "Data",
        "Ticker",
        "Strategia",
        "Quantità per Leg",
        "Buy Put",
        "Sell Put",
        "Sell Call",
        "Buy Call",
    ],
}


def _decorate(name: str, draw: st.DrawFn) -> str:
    """Header cells as people type them: any case, stray spaces, sometimes broken."""
    style = draw(st.sampled_from(["as is", "upper", "lower", "spaced", "typo", "junk"]))
    if style == "upper":
        return name.upper()
    if style == "lower":
        return name.lower()
    if style == "spaced":
        return f"  {name.replace(' ', '   ')} "
    if style == "typo":
        return name[:-1] if len(name) > 1 else name + "x"
    if style == "junk":
        return draw(_junk())
    return name


@st.composite
def sheets(draw: st.DrawFn, today: date) -> list[list[str]]:
    """A grid: junk rows, a header (either dialect, or a broken one), ragged data rows."""
    rows: list[list[str]] = [
        draw(st.lists(_junk(), max_size=6)) for _ in range(draw(st.integers(0, 2)))
    ]
    dialect = draw(st.sampled_from(sorted(_HEADERS)))
    names = list(_HEADERS[dialect])
    # Mostly intact headers (so rows get parsed at all), sometimes mangled ones.
    mangle = draw(st.integers(0, 14)) == 0
    header = [_decorate(n, draw) if mangle else n for n in names]
    if draw(st.booleans()):
        header = [f" {h.upper()} " if i % 2 else h.lower() for i, h in enumerate(header)]
    order = draw(st.permutations(range(len(header))))
    extra = draw(st.lists(st.text(max_size=10), max_size=2))
    rows.append([header[i] for i in order] + extra)

    kinds = draw(st.lists(st.sampled_from(["today"] * 3 + ["other"]), max_size=3))
    for kind in kinds:
        strategy = draw(
            _mostly(
                st.sampled_from(["Long", "Short", "long", " SHORT ", "bull_put", "bear call"]),
                st.one_of(st.sampled_from(["Lоng", "Shorts", "Iron Condor", ""]), _junk()),
            )
        )  # "Lоng" has a Cyrillic o
        long_strike, short_strike = _strikes(draw, _header_side(strategy))
        values = {
            "date": draw(
                _mostly(_valid_today(today), _date_cell(today))
                if kind == "today"
                else _date_cell(today)
            ),
            "ticker": draw(
                _mostly(
                    st.sampled_from(["QQQ", "qqq", " QQQ "]),
                    st.one_of(st.sampled_from(["SPY", "", "QQQ\u0301"]), _junk()),
                )
            ),
            "strategy": strategy,
            "qty": draw(
                _mostly(
                    st.integers(min_value=1, max_value=50).map(str),
                    st.one_of(
                        st.integers(min_value=-5, max_value=60).map(str),
                        st.sampled_from(["10.0", "1e1", "10,5", "2.5", " 7 ", "0"]),
                        _junk(),
                    ),
                )
            ),
        }
        by_name = {
            "Date": values["date"],
            "Data": values["date"],
            "Ticker": values["ticker"],
            "Strategy": strategy,
            "Strategia": strategy,
            "Qty per leg": values["qty"],
            "Qty": values["qty"],
            "Quantità per Leg": values["qty"],
            "Strike Long": long_strike,
            "Strike Short": short_strike,
        }
        # Four-leg sheets: fill the legs of the row's own side, dash the others
        # (or, sometimes, not).
        puts = _header_side(strategy) != "call"
        dash = draw(_mostly(st.sampled_from(["-", "", "–"]), st.sampled_from(["x", "0", "450"])))
        by_name.update(
            {
                "Buy Put": long_strike if puts else dash,
                "Sell Put": short_strike if puts else dash,
                "Sell Call": dash if puts else short_strike,
                "Buy Call": dash if puts else long_strike,
            }
        )
        row = [by_name.get(names[i], "") for i in order]
        # Ragged: cut short or run long.
        shape = draw(st.sampled_from(["full"] * 4 + ["cut", "long"]))
        if shape == "cut":
            row = row[: draw(st.integers(0, len(row)))]
        elif shape == "long":
            row += draw(st.lists(_junk(), min_size=1, max_size=4))
        rows.append(row)
        if draw(st.integers(0, 4)) == 0:
            rows.append(draw(st.lists(_junk(), max_size=8)))
    return rows


def _header_side(strategy: str) -> str:
    word = " ".join(strategy.split()).casefold()
    return "call" if word in ("short", "bear_call", "bear call") else "put"


# ---------------------------------------------------------------- the property


def _expected_invalid(parsed: SheetParseResult) -> set[str]:
    """The report's ``invalid`` entries the parser's errors must produce."""
    return {
        f"{'row ' + str(e.row_number) if e.row_number is not None else 'sheet'}: {e.reason}"
        for e in parsed.errors
    }


def _signal_fields(signal: Signal) -> tuple[Any, ...]:
    return (
        signal.signal_id,
        signal.trading_date,
        signal.strategy,
        signal.qty_per_leg,
        signal.strike_long,
        signal.strike_short,
        signal.row_number,
    )


def test_random_sheets_never_fail_and_publish_only_what_the_parser_accepts(
    poller: Poller,
) -> None:
    outcomes: Counter[str] = Counter()

    today = poller.today

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(rows=sheets(today))
    # Always run: today's date in both formats and both dialects, valid and not.
    @example(rows=[_HEADERS["english_pair"], [us(today), "QQQ", "Long", "10", "445", "450"]])
    @example(
        rows=[
            ["Segnali"],
            _HEADERS["italian"],
            [today.isoformat(), "QQQ", "Short", "7", "-", "-", "452", "457"],
        ]
    )
    @example(rows=[_HEADERS["english_pair"], [today.isoformat(), "QQQ", "Long", "1", "450", "445"]])
    # A pasted blob in today's row: rejected, and its alert must still be deliverable.
    @example(rows=[_HEADERS["english_pair"], [us(today), "QQQ", "Long", *(["9" * 30_000] * 3)]])
    def check(rows: list[list[str]]) -> None:
        parsed = parse_sheet(rows, poller.today, LIMITS)
        poller.forget_today()
        poller.sheets.set_values(SHEET_ID, rows)

        response = poller.fn.post({"duration_seconds": 0.01}, timeout=60)
        assert response.status_code == 200, poller.fn.logs()[-3000:]
        report = response.json()
        assert report["fatal"] is None and report["read_failures"] == 0, report
        assert report["polls"] == 1, report
        assert set(report["invalid"]) == _expected_invalid(parsed), report

        if parsed.signal is None:
            outcomes["rejected"] += 1
            assert report["published"] == [], report
            return
        outcomes["published"] += 1
        signal = parsed.signal
        poller.markers.add(f"signal:published:{signal.signal_id}")
        assert report["published"] == [signal.signal_id], report
        # Ground truth: the message on the fake (a wrongly published earlier
        # example would show up here as an extra message).
        messages = poller.signals.pull(wait=0.0)  # published before the reply
        assert len(messages) == 1, [m.data for m in messages]
        published = Signal.from_json(messages[0].data)
        assert _signal_fields(published) == _signal_fields(signal)
        assert messages[0].attributes["signal_id"] == signal.signal_id

    check()

    # Nothing else was ever published (an invalid last example included).
    assert poller.signals.pull(wait=1.0) == []
    assert "Traceback" not in poller.fn.logs(), poller.fn.logs()[-5000:]
    # The generator must exercise both sides of the property, or it proves little.
    assert outcomes["published"] >= 1 and outcomes["rejected"] >= 1, outcomes
    # Every SIGNAL_INVALID alert is small enough for the fan-out to accept it.
    for message in poller.alerts.pull(wait=0.5):
        alert = json.loads(message.data)
        assert alert["type"] == "SIGNAL_INVALID", alert["type"]
        assert len(message.data) <= 64 * 1024, (alert["params"].get("row"), len(message.data))
