"""Sheet and manual signal parsing (SPEC section 2)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from spreadpilot.domain.signals import (
    InvalidSignal,
    Signal,
    SignalLimits,
    Strategy,
    manual_signal,
    parse_sheet,
    signal_id_for,
)

TODAY = date(2026, 3, 2)
LIMITS = SignalLimits(max_spread_width=10.0, max_qty_per_leg=50)

EN_STRIKES = ["Date", "Ticker", "Strategy", "Qty per Leg", "Strike Long", "Strike Short"]
EN_LEGS = ["Date", "Ticker", "Strategy", "Qty", "Buy Put", "Sell Put", "Sell Call", "Buy Call"]
IT = [
    "Data",
    "Ticker",
    "Strategia",
    "Quantità per Leg",
    "Buy Put",
    "Sell Put",
    "Sell Call",
    "Buy Call",
]


def parse(rows: list[list[object]], today: date = TODAY) -> tuple[Signal | None, list[str]]:
    result = parse_sheet(rows, today, LIMITS)
    return result.signal, [e.reason for e in result.errors]


def only_error(rows: list[list[object]]) -> str:
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.signal is None
    assert len(result.errors) == 1, result.errors
    return result.errors[0].reason


# --- header dialects -----------------------------------------------------------


def test_italian_dialect_bull_put_with_rows_above_header() -> None:
    rows: list[list[object]] = [
        ["Segnali QQQ"],
        [],
        ["Note: aggiornato ogni mattina", "", ""],
        IT,
        ["2/27/2026", "QQQ", "Short", "10", "-", "-", "600", "605"],
        ["3/2/2026", "QQQ", "Long", "10", "445", "450", "-", "-"],
    ]
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.errors == []
    assert result.header_row == 4
    sig = result.signal
    assert sig is not None
    assert sig.strategy is Strategy.BULL_PUT
    assert (sig.strike_long, sig.strike_short) == (445.0, 450.0)  # long = Buy Put (lower)
    assert sig.qty_per_leg == 10
    assert sig.trading_date == TODAY == sig.expiry
    assert sig.source == "sheet"
    assert sig.row_number == 6
    assert sig.ticker == "QQQ"


def test_italian_dialect_bear_call() -> None:
    rows: list[list[object]] = [IT, ["2026-03-02", "QQQ", "Short", "5", "-", "-", "450", "455"]]
    sig, errors = parse(rows)
    assert errors == []
    assert sig is not None
    assert sig.strategy is Strategy.BEAR_CALL
    assert (sig.strike_long, sig.strike_short) == (455.0, 450.0)  # long = Buy Call (higher)


def test_english_dialect_with_strike_columns() -> None:
    rows: list[list[object]] = [EN_STRIKES, ["2026-03-02", "QQQ", "Long", "3", "445", "450"]]
    sig, errors = parse(rows)
    assert errors == []
    assert sig is not None and sig.strategy is Strategy.BULL_PUT
    assert (sig.strike_long, sig.strike_short, sig.qty_per_leg) == (445.0, 450.0, 3)


def test_english_dialect_with_leg_columns() -> None:
    rows: list[list[object]] = [EN_LEGS, ["3/2/2026", "QQQ", "Short", "2", "", "", "450", "452"]]
    sig, errors = parse(rows)
    assert errors == []
    assert sig is not None and sig.strategy is Strategy.BEAR_CALL
    assert (sig.strike_long, sig.strike_short) == (452.0, 450.0)


def test_header_match_ignores_case_and_surrounding_spaces() -> None:
    header = ["  DATA ", "ticker", " STRATEGIA", "quantità PER leg (x)", "buy put ", " SELL PUT"]
    header += ["Sell  Call", "BUY CALL"]
    rows: list[list[object]] = [header, ["03/02/2026", " qqq ", " long ", 1, 445, 450.0, "-", "-"]]
    sig, errors = parse(rows)
    assert errors == []
    assert sig is not None and sig.qty_per_leg == 1


def test_header_is_first_row_with_date_ticker_strategy() -> None:
    rows: list[list[object]] = [
        ["Date", "Comment"],  # not a header: no ticker/strategy
        EN_STRIKES,
        EN_STRIKES,  # a second header-looking row is just a junk data row
        ["2026-03-02", "QQQ", "Long", "1", "445", "450"],
    ]
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.header_row == 2
    assert result.signal is not None and result.signal.row_number == 4


def test_date_cells_as_objects_and_other_days_ignored() -> None:
    rows: list[list[object]] = [
        EN_STRIKES,
        [date(2026, 3, 1), "QQQ", "Long", "1", "440", "445"],
        [datetime(2026, 3, 2, 9, 0), "QQQ", "Long", "1", "445", "450"],
    ]
    sig, errors = parse(rows)
    assert errors == [] and sig is not None and sig.strike_long == 445.0


def test_no_row_for_today_is_no_signal_and_no_error() -> None:
    rows: list[list[object]] = [EN_STRIKES, ["2026-03-01", "QQQ", "Long", "1", "445", "450"]]
    assert parse(rows) == (None, [])


def test_junk_rows_and_invalid_other_days_do_not_block_today() -> None:
    rows: list[list[object]] = [
        EN_STRIKES,
        ["totally", "not", "a", "row"],
        ["2/30/2026", "QQQ", "Long", "1", "445", "450"],  # impossible date: skipped
        ["2026-02-27", "QQQ", "Sideways", "x", "abc", ""],  # yesterday's mess
        [],
        ["2026-03-02", "QQQ", "Long", "1", "445", "450"],
        ["\u00a0", None, 3.5, object()],
    ]
    sig, errors = parse(rows)
    assert errors == [] and sig is not None


def test_ragged_today_row_reports_missing_cells() -> None:
    assert only_error([EN_STRIKES, ["2026-03-02", "QQQ", "Long", "1", "445"]]) == (
        "Strike Short is missing"
    )


# --- header problems -------------------------------------------------------------


def test_no_header_row() -> None:
    result = parse_sheet([["a", "b"], ["2026-03-02", "QQQ"]], TODAY, LIMITS)
    assert result.signal is None
    assert result.errors[0].row_number is None
    assert "no header row" in result.errors[0].reason


def test_empty_sheet() -> None:
    result = parse_sheet([], TODAY, LIMITS)
    assert result.signal is None and "no header row" in result.errors[0].reason


def test_header_without_qty_column() -> None:
    rows: list[list[object]] = [["Date", "Ticker", "Strategy", "Strike Long", "Strike Short"]]
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.signal is None
    assert result.errors[0].row_number == 1
    assert "no qty column" in result.errors[0].reason


def test_header_without_strike_columns() -> None:
    rows: list[list[object]] = [["Date", "Ticker", "Strategy", "Qty", "Buy Put", "Sell Put"]]
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.signal is None and "no strike columns" in result.errors[0].reason


# --- validation: one precise reason per rejected row ---------------------------

INVALID_ROWS: list[tuple[list[object], str]] = [
    (["2026-03-02", "SPY", "Long", "1", "445", "450"], "ticker 'SPY' is not QQQ"),
    (["2026-03-02", "QQQ", "Iron Condor", "1", "445", "450"], "unknown strategy 'Iron Condor'"),
    (["2026-03-02", "QQQ", "", "1", "445", "450"], "unknown strategy '(empty)'"),
    (["2026-03-02", "QQQ", "Long", "", "445", "450"], "qty per leg is missing"),
    (["2026-03-02", "QQQ", "Long", "ten", "445", "450"], "qty per leg 'ten' is not a number"),
    (["2026-03-02", "QQQ", "Long", "2.5", "445", "450"], "qty per leg '2.5' is not an integer"),
    (["2026-03-02", "QQQ", "Long", "0", "445", "450"], "qty per leg 0 is outside 1..50"),
    (["2026-03-02", "QQQ", "Long", "51", "445", "450"], "qty per leg 51 is outside 1..50"),
    (["2026-03-02", "QQQ", "Long", "-3", "445", "450"], "qty per leg -3 is outside 1..50"),
    (["2026-03-02", "QQQ", "Long", "1", "-445", "450"], "Strike Long strike -445 must be positive"),
    (["2026-03-02", "QQQ", "Long", "1", "0", "5"], "Strike Long strike 0 must be positive"),
    (["2026-03-02", "QQQ", "Long", "1", "445.5", "450"], "not on the 1 strike grid"),
    (["2026-03-02", "QQQ", "Long", "1", "nan", "450"], "is not a finite number"),
    (["2026-03-02", "QQQ", "Long", "1", "1e400", "450"], "implausibly large"),
    (["2026-03-02", "QQQ", "Long", "1", "450", "450"], "Strike Long equals Strike Short (450)"),
    (
        ["2026-03-02", "QQQ", "Long", "1", "450", "445"],
        "bull put needs the long put below the short put",
    ),
    (
        ["2026-03-02", "QQQ", "Short", "1", "445", "450"],
        "bear call needs the long call above the short call",
    ),
    (
        ["2026-03-02", "QQQ", "Long", "1", "430", "450"],
        "spread width 20 exceeds MAX_SPREAD_WIDTH 10",
    ),
]


@pytest.mark.parametrize(("row", "reason"), INVALID_ROWS)
def test_each_validation_reason(row: list[object], reason: str) -> None:
    result = parse_sheet([EN_STRIKES, row], TODAY, LIMITS)
    assert result.signal is None
    assert len(result.errors) == 1
    error = result.errors[0]
    assert reason in error.reason
    assert error.row_number == 2
    assert error.raw == tuple(row)


def test_width_exactly_at_limit_is_accepted() -> None:
    sig, errors = parse([EN_STRIKES, ["2026-03-02", "QQQ", "Long", "50", "440", "450"]])
    assert errors == [] and sig is not None and sig.qty_per_leg == 50


def test_unused_leg_cells_must_be_dash_or_empty() -> None:
    row: list[object] = ["2026-03-02", "QQQ", "Long", "1", "445", "450", "460", "-"]
    assert only_error([IT, row]) == "Sell Call must be '-' on a Long (bull put) row, got '460'"


def test_leg_dialect_missing_needed_leg() -> None:
    row: list[object] = ["2026-03-02", "QQQ", "Short", "1", "-", "-", "-", "455"]
    assert only_error([IT, row]) == "Sell Call is missing"


def test_italian_decimal_comma_and_half_strike_grid() -> None:
    limits = SignalLimits(strike_increment=0.5)
    row: list[object] = ["2026-03-02", "QQQ", "Long", "1", "445,5", "450", "-", "-"]
    result = parse_sheet([IT, row], TODAY, limits)
    assert result.signal is not None and result.signal.strike_long == 445.5


def test_other_ticker_is_reported_only_without_a_qqq_row() -> None:
    spy = ["2026-03-02", "SPY", "Long", "1", "445", "450"]
    qqq = ["2026-03-02", "QQQ", "Long", "1", "445", "450"]
    sig, errors = parse([EN_STRIKES, spy, qqq])
    assert sig is not None and errors == []
    sig, errors = parse([EN_STRIKES, spy])
    assert sig is None and errors == ["ticker 'SPY' is not QQQ"]


def test_an_invalid_qqq_row_today_blocks_the_valid_one() -> None:
    good = ["2026-03-02", "QQQ", "Long", "1", "445", "450"]
    bad = ["2026-03-02", "QQQ", "Long", "1", "450", "445"]
    result = parse_sheet([EN_STRIKES, good, bad], TODAY, LIMITS)
    assert result.signal is None
    assert [e.row_number for e in result.errors] == [3]


def test_two_different_valid_rows_today_are_ambiguous() -> None:
    a = ["2026-03-02", "QQQ", "Long", "1", "445", "450"]
    b = ["2026-03-02", "QQQ", "Long", "2", "445", "450"]
    reason = only_error([EN_STRIKES, a, b])
    assert "2 different QQQ signals" in reason and "rows 2, 3" in reason


def test_identical_duplicate_rows_are_one_signal() -> None:
    a = ["2026-03-02", "QQQ", "Long", "1", "445", "450"]
    sig, errors = parse([EN_STRIKES, a, list(a)])
    assert errors == [] and sig is not None and sig.row_number == 2


# --- never raises ---------------------------------------------------------------

cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**5000, max_value=10**5001),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from(["2026-03-02", "3/2/2026", "QQQ", "Long", "Short", "-", "445", "1e999999"]),
    st.sampled_from(["-1e999999", "1e-999999", "sNaN", "Infinity", "٣٤٥", "4,5", "0x1F"]),
    st.dates(),
)
header_cells = st.sampled_from(EN_LEGS + IT + EN_STRIKES + ["", "Qty", "x"])


@settings(max_examples=300, deadline=None)
@given(
    header=st.lists(header_cells, max_size=10),
    rows=st.lists(st.lists(cells, max_size=10), max_size=8),
    header_at=st.integers(min_value=0, max_value=3),
)
def test_parse_sheet_never_raises(
    header: list[str], rows: list[list[object]], header_at: int
) -> None:
    grid: list[list[object]] = list(rows)
    grid.insert(min(header_at, len(grid)), list(header))
    result = parse_sheet(grid, TODAY, LIMITS)
    assert (result.signal is None) or (result.errors == [])
    for error in result.errors:
        assert isinstance(error.reason, str) and len(error.reason) < 500


def test_parse_sheet_survives_cells_whose_str_raises() -> None:
    class Nasty:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    rows: list[list[object]] = [[Nasty(), "x"], IT, ["2026-03-02", "QQQ", "Long", Nasty(), "445"]]
    result = parse_sheet(rows, TODAY, LIMITS)
    assert result.signal is None
    assert result.errors[0].reason == "qty per leg is missing"


# --- ids ---------------------------------------------------------------------------


def test_signal_id_is_deterministic_readable_and_distinct() -> None:
    a = signal_id_for(TODAY, Strategy.BULL_PUT, 445.0, 450.0, 10)
    assert a == signal_id_for(TODAY, Strategy.BULL_PUT, 445, 450, 10)
    assert a.startswith("20260302-bull_put-445-450-x10-")
    assert len(a.rsplit("-", 1)[1]) == 8
    others = {
        signal_id_for(date(2026, 3, 3), Strategy.BULL_PUT, 445.0, 450.0, 10),
        signal_id_for(TODAY, Strategy.BULL_PUT, 445.0, 450.0, 11),
        signal_id_for(TODAY, Strategy.BULL_PUT, 445.5, 450.0, 10),
        signal_id_for(TODAY, Strategy.BULL_PUT, 445.0, 450.0, 10, expiry=date(2026, 3, 4)),
    }
    assert a not in others and len(others) == 4
    assert signal_id_for(TODAY, Strategy.BULL_PUT, 445.0, 450.0, 10, expiry=TODAY) == a


def test_sheet_and_identical_manual_signal_share_an_id() -> None:
    sheet, _ = parse([EN_STRIKES, ["2026-03-02", "QQQ", "Long", "10", "445", "450"]])
    manual = manual_signal(
        {"strategy": "bull_put", "qty_per_leg": 10, "strike_long": 445.0, "strike_short": 450.0},
        today=TODAY,
    )
    assert sheet is not None and sheet.signal_id == manual.signal_id


# --- manual signals ----------------------------------------------------------------


def seed_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "strategy": "vertical_spread",
        "qty_per_leg": 10,
        "strike_long": 445.0,
        "strike_short": 450.0,
        "follower_id": "follower123",
    }
    body.update(overrides)
    return body


def test_manual_vertical_spread_infers_strategy_from_strikes() -> None:
    bull = manual_signal(seed_body(), today=TODAY)
    assert bull.strategy is Strategy.BULL_PUT
    assert bull.source == "manual" and bull.expiry == TODAY and bull.row_number is None
    bear = manual_signal(seed_body(strike_long=455.0, strike_short=450.0), today=TODAY)
    assert bear.strategy is Strategy.BEAR_CALL


@pytest.mark.parametrize(
    ("alias", "long_", "short", "expected"),
    [
        ("bull_put", 445, 450, Strategy.BULL_PUT),
        ("Long", 445, 450, Strategy.BULL_PUT),
        ("bear_call", 455, 450, Strategy.BEAR_CALL),
        ("Short", 455, 450, Strategy.BEAR_CALL),
        ("SHORT", "455", "450", Strategy.BEAR_CALL),
    ],
)
def test_manual_strategy_aliases(
    alias: str, long_: object, short: object, expected: Strategy
) -> None:
    sig = manual_signal(
        seed_body(strategy=alias, strike_long=long_, strike_short=short), today=TODAY
    )
    assert sig.strategy is expected


def test_manual_optional_expiry_and_signal_id() -> None:
    sig = manual_signal(seed_body(expiry="2026-03-04", signal_id="ops-42"), today=TODAY)
    assert sig.expiry == date(2026, 3, 4) and sig.signal_id == "ops-42"
    assert sig.trading_date == TODAY


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"strategy": "bull_put", "strike_long": 450.0, "strike_short": 445.0}, "bull put needs"),
        ({"strategy": "iron_fly"}, "unknown strategy 'iron_fly'"),
        ({"strike_long": 450.0}, "strike_long equals strike_short (450)"),
        ({"qty_per_leg": 0}, "qty per leg 0 is outside 1..50"),
        ({"qty_per_leg": True}, "qty per leg True is not a number"),
        ({"strike_long": 430.0}, "spread width 20 exceeds MAX_SPREAD_WIDTH 10"),
        ({"strike_long": 445.5}, "not on the 1 strike grid"),
        ({"expiry": "2026-03-01"}, "expiry 2026-03-01 is in the past"),
        ({"expiry": "soon"}, "expiry 'soon' is not a YYYY-MM-DD date"),
        ({"signal_id": "has spaces"}, "signal_id must be"),
        ({"ticker": "SPY"}, "ticker 'SPY' is not QQQ"),
        ({"strike_lng": 445.0}, "unknown field(s): strike_lng"),
        ({"strike_short": None}, "missing required field 'strike_short'"),
    ],
)
def test_manual_signal_rejections(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidSignal) as info:
        manual_signal(seed_body(**overrides), today=TODAY, limits=LIMITS)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_signal_model_refuses_debit_shapes_and_round_trips_json() -> None:
    sig = manual_signal(seed_body(), today=TODAY)
    assert Signal.from_json(sig.to_json()) == sig
    assert sig.width == 5.0
    data = sig.model_dump()
    data["strike_long"], data["strike_short"] = 450.0, 445.0
    with pytest.raises(ValidationError, match="bull put needs"):
        Signal.model_validate(data)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        SignalLimits(max_spread_width=0)
    with pytest.raises(ValueError):
        SignalLimits(max_qty_per_leg=0)
    with pytest.raises(ValueError):
        SignalLimits(strike_increment=-1)


def test_decimal_cells_are_accepted() -> None:
    row: list[object] = ["2026-03-02", "QQQ", "Long", Decimal(2), Decimal("445"), 450]
    sig, errors = parse([EN_STRIKES, row])
    assert errors == [] and sig is not None and sig.qty_per_leg == 2
