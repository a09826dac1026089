"""Trading signals: parsing the Google Sheet and the manual body (SPEC section 2).

Two things make this module money-critical. A signal decides what is sold to
many accounts, so anything doubtful is rejected with a precise, human-readable
reason rather than guessed; and the sheet is edited by hand, so the parser must
never raise on whatever a person types into a cell: every problem becomes a
``SignalError`` that the caller turns into a SIGNAL_INVALID alert.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_TICKER = "QQQ"
# Strikes above this are typos (or attacks on Decimal arithmetic), never QQQ.
_MAX_PLAUSIBLE_STRIKE = Decimal(100_000)
_EMPTY_CELLS = frozenset({"", "-", "–", "—"})  # dashes people type


class Strategy(StrEnum):
    """The two credit spreads the strategy trades."""

    BULL_PUT = "bull_put"
    BEAR_CALL = "bear_call"


# Sheet `Long`/`Short` name the market view; the canonical names are also accepted.
_STRATEGY_ALIASES: dict[str, Strategy] = {
    "long": Strategy.BULL_PUT,
    "short": Strategy.BEAR_CALL,
    "bull_put": Strategy.BULL_PUT,
    "bull put": Strategy.BULL_PUT,
    "bear_call": Strategy.BEAR_CALL,
    "bear call": Strategy.BEAR_CALL,
}


class InvalidSignal(ValueError):
    """A signal that must not be traded; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Signal(BaseModel):
    """One accepted instruction to open a credit spread on ``trading_date``.

    The model re-checks the structural invariants (positive strikes, the long
    leg on the protective side) so that a Signal rebuilt from JSON by another
    process cannot describe a debit or naked trade. Limits that depend on
    configuration (width, qty cap, grid) are checked by the parsers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    signal_id: str = Field(min_length=1, max_length=128)
    trading_date: date
    ticker: str = DEFAULT_TICKER
    strategy: Strategy
    qty_per_leg: int = Field(ge=1)
    # Finite and plausible: JSON from Pub/Sub may say 1e999 (infinity), which is
    # "positive" and would otherwise pass as the far side of a spread.
    strike_long: float = Field(gt=0, le=float(_MAX_PLAUSIBLE_STRIKE), allow_inf_nan=False)
    strike_short: float = Field(gt=0, le=float(_MAX_PLAUSIBLE_STRIKE), allow_inf_nan=False)
    expiry: date
    source: Literal["sheet", "manual"]
    row_number: int | None = None

    @model_validator(mode="after")
    def _long_leg_protects(self) -> Self:
        reason = _side_problem(
            self.strategy, Decimal(str(self.strike_long)), Decimal(str(self.strike_short))
        )
        if reason is not None:
            raise ValueError(reason)
        return self

    @property
    def width(self) -> float:
        return abs(self.strike_short - self.strike_long)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Signal:
        return cls.model_validate_json(text)


@dataclass(frozen=True)
class SignalError:
    """Why one sheet row (or the header) was not turned into a signal."""

    row_number: int | None
    reason: str
    raw: tuple[object, ...] = ()


@dataclass(frozen=True)
class SignalLimits:
    """Configuration the validation needs (MAX_SPREAD_WIDTH, MAX_QTY_PER_LEG, grid)."""

    max_spread_width: float = 10.0
    max_qty_per_leg: int = 50
    strike_increment: float = 1.0
    ticker: str = DEFAULT_TICKER

    def __post_init__(self) -> None:
        if not self.max_spread_width > 0:
            raise ValueError(f"max_spread_width must be positive, got {self.max_spread_width}")
        if self.max_qty_per_leg < 1:
            raise ValueError(f"max_qty_per_leg must be >= 1, got {self.max_qty_per_leg}")
        if not self.strike_increment > 0:
            raise ValueError(f"strike_increment must be positive, got {self.strike_increment}")


@dataclass(frozen=True)
class SheetParseResult:
    """Today's signal, if exactly one valid one exists, and every problem found."""

    signal: Signal | None
    errors: list[SignalError] = field(default_factory=list)
    header_row: int | None = None


def signal_id_for(
    trading_date: date,
    strategy: Strategy,
    strike_long: float,
    strike_short: float,
    qty: int,
    *,
    expiry: date | None = None,
) -> str:
    """Deterministic id: the same trade on the same day always gets the same id.

    That is what makes delivery exactly-once downstream: a re-read sheet, a
    Pub/Sub redelivery or a manual re-send of the same trade collide on the
    ledger's unique index instead of trading twice. The readable prefix helps
    people; the hash keeps ids unique when strikes have decimals. ``expiry``
    only takes part when it differs from the trading date (non-0DTE manual).
    """
    lo, sh = _fmt(Decimal(str(strike_long))), _fmt(Decimal(str(strike_short)))
    canonical = f"{trading_date.isoformat()}|{strategy.value}|{lo}|{sh}|{qty}"
    if expiry is not None and expiry != trading_date:
        canonical += f"|{expiry.isoformat()}"
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    return f"{trading_date.strftime('%Y%m%d')}-{strategy.value}-{lo}-{sh}-x{qty}-{digest}"


# ---------------------------------------------------------------------------
# Sheet parsing


class _Reject(Exception):
    """Internal: a row (or value) fails validation for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Columns:
    date: int
    ticker: int
    strategy: int
    qty: int | None
    strike_long: int | None = None
    strike_short: int | None = None
    buy_put: int | None = None
    sell_put: int | None = None
    sell_call: int | None = None
    buy_call: int | None = None

    @property
    def has_strike_pair(self) -> bool:
        return self.strike_long is not None and self.strike_short is not None

    @property
    def has_four_legs(self) -> bool:
        legs = (self.buy_put, self.sell_put, self.sell_call, self.buy_call)
        return all(c is not None for c in legs)


_DATE_HEADERS = ("date", "data")
_STRATEGY_HEADERS = ("strategy", "strategia")
_QTY_MARKERS = ("qty", "quantità per leg", "quantita per leg")


def parse_sheet(
    rows: Sequence[Sequence[object]], today: date, limits: SignalLimits | None = None
) -> SheetParseResult:
    """Find and validate today's QQQ signal in a sheet's cell grid.

    Choices (all fail closed):
    - The header row is the first row holding the date, ticker and strategy
      headers; rows above it are ignored. No header, or a header without a qty
      column or strike columns, is an error and no signal.
    - Only rows dated ``today`` matter. Rows with other dates, or with no
      readable date (notes, blank lines, junk), are skipped silently: yesterday's
      typo must not block today.
    - Of today's rows, those with ticker QQQ are validated; a failing one is an
      error. Today's rows with another ticker are reported only when there is no
      QQQ row for today (a sheet saying "SPY" today must alert, not go quiet).
    - Any invalid QQQ row for today, or two valid ones that disagree, means no
      signal: nothing is traded when the sheet is ambiguous. Identical
      duplicates are one signal.
    ``row_number`` is the 1-based sheet row. This function never raises on
    cell content.
    """
    lim = limits if limits is not None else SignalLimits()
    header_index, cols, header_error = _find_header(rows)
    if header_index is None or cols is None:
        return SheetParseResult(None, [header_error or SignalError(None, "no header row")])
    header_row = header_index + 1
    if header_error is not None:
        return SheetParseResult(None, [header_error], header_row)

    errors: list[SignalError] = []
    other_ticker_errors: list[SignalError] = []
    signals: list[Signal] = []
    qqq_rows = 0
    for index in range(header_index + 1, len(rows)):
        row = rows[index]
        row_number = index + 1
        try:
            raw = tuple(row)
        except Exception:
            continue
        if _parse_date(_cell(raw, cols.date)) != today:
            continue
        ticker = _text(_cell(raw, cols.ticker)).upper()
        if ticker != lim.ticker.upper():
            shown = ticker or "(empty)"
            reason = f"ticker {shown!r} is not {lim.ticker}"
            other_ticker_errors.append(SignalError(row_number, reason, raw))
            continue
        qqq_rows += 1
        try:
            signals.append(_row_to_signal(raw, row_number, cols, today, lim))
        except _Reject as rejected:
            errors.append(SignalError(row_number, rejected.reason, raw))
        except Exception as exc:  # pragma: no cover - defensive: never raise
            errors.append(SignalError(row_number, f"unreadable row: {type(exc).__name__}", raw))

    if qqq_rows == 0:
        return SheetParseResult(None, other_ticker_errors, header_row)
    if errors:
        return SheetParseResult(None, errors, header_row)
    distinct = {s.signal_id for s in signals}
    if len(distinct) > 1:
        numbers = ", ".join(str(s.row_number) for s in signals)
        reason = f"{len(signals)} different QQQ signals for {today.isoformat()} (rows {numbers})"
        return SheetParseResult(None, [SignalError(signals[0].row_number, reason)], header_row)
    return SheetParseResult(signals[0], [], header_row)


def _find_header(
    rows: Sequence[Sequence[object]],
) -> tuple[int | None, _Columns | None, SignalError | None]:
    for index, row in enumerate(rows):
        try:
            names = [_header(c) for c in row]
        except Exception:
            continue
        date_col = _first(names, _DATE_HEADERS)
        ticker_col = _first(names, ("ticker",))
        strategy_col = _first(names, _STRATEGY_HEADERS)
        if date_col is None or ticker_col is None or strategy_col is None:
            continue
        qty_col = next((i for i, n in enumerate(names) if any(m in n for m in _QTY_MARKERS)), None)
        cols = _Columns(
            date=date_col,
            ticker=ticker_col,
            strategy=strategy_col,
            qty=qty_col,
            strike_long=_first(names, ("strike long",)),
            strike_short=_first(names, ("strike short",)),
            buy_put=_first(names, ("buy put",)),
            sell_put=_first(names, ("sell put",)),
            sell_call=_first(names, ("sell call",)),
            buy_call=_first(names, ("buy call",)),
        )
        raw = tuple(row)
        if qty_col is None:
            reason = "header has no qty column (one containing 'Qty' or 'Quantità per Leg')"
            return index, cols, SignalError(index + 1, reason, raw)
        if not (cols.has_strike_pair or cols.has_four_legs):
            reason = (
                "header has no strike columns: need 'Strike Long' and 'Strike Short', "
                "or 'Buy Put', 'Sell Put', 'Sell Call' and 'Buy Call'"
            )
            return index, cols, SignalError(index + 1, reason, raw)
        return index, cols, None
    reason = "no header row with Date/Data, Ticker and Strategy/Strategia"
    return None, None, SignalError(None, reason)


def _row_to_signal(
    raw: tuple[object, ...], row_number: int, cols: _Columns, today: date, lim: SignalLimits
) -> Signal:
    strategy = _parse_strategy(_cell(raw, cols.strategy))
    assert cols.qty is not None  # guaranteed by _find_header
    qty = _parse_qty(_cell(raw, cols.qty), lim)
    if cols.has_strike_pair:
        assert cols.strike_long is not None and cols.strike_short is not None
        long_name, short_name = "Strike Long", "Strike Short"
        long_cell, short_cell = _cell(raw, cols.strike_long), _cell(raw, cols.strike_short)
    else:
        if strategy is Strategy.BULL_PUT:
            long_name, short_name = "Buy Put", "Sell Put"
            long_col, short_col = cols.buy_put, cols.sell_put
            unused = (("Sell Call", cols.sell_call), ("Buy Call", cols.buy_call))
        else:
            long_name, short_name = "Buy Call", "Sell Call"
            long_col, short_col = cols.buy_call, cols.sell_call
            unused = (("Buy Put", cols.buy_put), ("Sell Put", cols.sell_put))
        for name, col in unused:
            cell = _cell(raw, col)
            if _text(cell) not in _EMPTY_CELLS:
                raise _Reject(f"{name} must be '-' on a {_view(strategy)} row, got {_text(cell)!r}")
        long_cell, short_cell = _cell(raw, long_col), _cell(raw, short_col)
    strike_long = _parse_strike(long_cell, long_name, lim)
    strike_short = _parse_strike(short_cell, short_name, lim)
    _check_spread(strategy, strike_long, strike_short, lim, long_name, short_name)
    return Signal(
        signal_id=signal_id_for(today, strategy, float(strike_long), float(strike_short), qty),
        trading_date=today,
        ticker=lim.ticker,
        strategy=strategy,
        qty_per_leg=qty,
        strike_long=float(strike_long),
        strike_short=float(strike_short),
        expiry=today,
        source="sheet",
        row_number=row_number,
    )


def limits_problem(signal: Signal, limits: SignalLimits | None = None) -> str | None:
    """Why ``signal`` breaks the configured limits, or None when it is within them.

    The model checks only what holds under any configuration. A Signal that
    arrives from another process (a Pub/Sub message) was built by someone
    else's parser, or by no parser at all, so whoever acts on it re-checks it
    against this deployment's limits with the very rules the parsers use:
    ticker, qty in 1..MAX_QTY_PER_LEG, strikes on the grid, width within
    MAX_SPREAD_WIDTH.
    """
    lim = limits if limits is not None else SignalLimits()
    try:
        if signal.ticker.upper() != lim.ticker.upper():
            raise _Reject(f"ticker {signal.ticker!r} is not {lim.ticker}")
        _parse_qty(signal.qty_per_leg, lim)
        strike_long = _parse_strike(signal.strike_long, "strike_long", lim)
        strike_short = _parse_strike(signal.strike_short, "strike_short", lim)
        _check_spread(
            signal.strategy, strike_long, strike_short, lim, "strike_long", "strike_short"
        )
    except _Reject as rejected:
        return rejected.reason
    return None


# ---------------------------------------------------------------------------
# Manual signals

_MANUAL_KEYS = frozenset(
    {"strategy", "qty_per_leg", "strike_long", "strike_short", "follower_id", "expiry"}
    | {"signal_id", "ticker"}
)
_SIGNAL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)


def manual_signal(
    body: Mapping[str, object], *, today: date, limits: SignalLimits | None = None
) -> Signal:
    """Build a Signal from the manual body (CLI / Pub/Sub / ``POST /trade/signal``).

    Body: ``strategy`` (vertical_spread|bull_put|bear_call|Long|Short),
    ``qty_per_leg``, ``strike_long``, ``strike_short``; optional ``expiry``
    (ISO date, default ``today``: 0DTE), ``signal_id`` (default derived, so a
    re-sent identical trade is the same signal), ``ticker`` (must be QQQ) and
    ``follower_id``, which routes the signal and is ignored here. Unknown keys
    are rejected: a misspelt field must not silently fall back to a default.
    Same rules as the sheet; raises ``InvalidSignal`` with the reason.
    """
    lim = limits if limits is not None else SignalLimits()
    try:
        return _manual_signal(body, today, lim)
    except _Reject as rejected:
        raise InvalidSignal(rejected.reason) from None
    except InvalidSignal:
        raise
    except Exception as exc:
        raise InvalidSignal(f"invalid manual signal: {exc}") from exc


def _manual_signal(body: Mapping[str, object], today: date, lim: SignalLimits) -> Signal:
    unknown = sorted(str(k) for k in body if k not in _MANUAL_KEYS)
    if unknown:
        raise _Reject(f"unknown field(s): {', '.join(unknown)}")
    for key in ("strategy", "qty_per_leg", "strike_long", "strike_short"):
        if body.get(key) is None:
            raise _Reject(f"missing required field {key!r}")
    ticker = _text(body.get("ticker", lim.ticker)).upper()
    if ticker != lim.ticker.upper():
        raise _Reject(f"ticker {ticker!r} is not {lim.ticker}")
    qty = _parse_qty(body["qty_per_leg"], lim)
    strike_long = _parse_strike(body["strike_long"], "strike_long", lim)
    strike_short = _parse_strike(body["strike_short"], "strike_short", lim)
    if _header(body["strategy"]) in ("vertical_spread", "vertical spread"):
        if strike_long == strike_short:
            raise _Reject(f"strike_long equals strike_short ({_fmt(strike_long)})")
        strategy = Strategy.BULL_PUT if strike_long < strike_short else Strategy.BEAR_CALL
    else:
        strategy = _parse_strategy(body["strategy"], manual=True)
    _check_spread(strategy, strike_long, strike_short, lim, "strike_long", "strike_short")

    expiry = today
    if body.get("expiry") is not None:
        parsed = _parse_date(body["expiry"])
        if parsed is None:
            raise _Reject(f"expiry {_text(body['expiry'])!r} is not a YYYY-MM-DD date")
        if parsed < today:
            raise _Reject(f"expiry {parsed.isoformat()} is in the past")
        expiry = parsed

    raw_id = body.get("signal_id")
    if raw_id is None:
        signal_id = signal_id_for(
            today, strategy, float(strike_long), float(strike_short), qty, expiry=expiry
        )
    else:
        signal_id = _text(raw_id)
        if not _SIGNAL_ID_PATTERN.fullmatch(signal_id):
            raise _Reject(
                "signal_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
            )
    return Signal(
        signal_id=signal_id,
        trading_date=today,
        ticker=lim.ticker,
        strategy=strategy,
        qty_per_leg=qty,
        strike_long=float(strike_long),
        strike_short=float(strike_short),
        expiry=expiry,
        source="manual",
        row_number=None,
    )


# ---------------------------------------------------------------------------
# Shared validation


def _check_spread(
    strategy: Strategy,
    strike_long: Decimal,
    strike_short: Decimal,
    lim: SignalLimits,
    long_name: str,
    short_name: str,
) -> None:
    if strike_long == strike_short:
        raise _Reject(f"{long_name} equals {short_name} ({_fmt(strike_long)})")
    side = _side_problem(strategy, strike_long, strike_short, long_name, short_name)
    if side is not None:
        raise _Reject(side)
    width = abs(strike_short - strike_long)
    max_width = Decimal(str(lim.max_spread_width))
    if width > max_width:
        raise _Reject(f"spread width {_fmt(width)} exceeds MAX_SPREAD_WIDTH {_fmt(max_width)}")


def _side_problem(
    strategy: Strategy,
    strike_long: Decimal,
    strike_short: Decimal,
    long_name: str = "strike_long",
    short_name: str = "strike_short",
) -> str | None:
    """A credit spread buys the cheaper, further out-of-the-money leg as protection."""
    lo, sh = _fmt(strike_long), _fmt(strike_short)
    if strategy is Strategy.BULL_PUT and not strike_long < strike_short:
        return (
            f"bull put needs the long put below the short put: "
            f"{long_name} {lo} is not below {short_name} {sh}"
        )
    if strategy is Strategy.BEAR_CALL and not strike_long > strike_short:
        return (
            f"bear call needs the long call above the short call: "
            f"{long_name} {lo} is not above {short_name} {sh}"
        )
    return None


def _parse_strategy(cell: object, *, manual: bool = False) -> Strategy:
    name = _header(cell)
    strategy = _STRATEGY_ALIASES.get(name)
    if strategy is None:
        expected = (
            "vertical_spread, bull_put, bear_call, Long or Short" if manual else "Long or Short"
        )
        raise _Reject(f"unknown strategy {_text(cell) or '(empty)'!r} (expected {expected})")
    return strategy


def _parse_qty(cell: object, lim: SignalLimits) -> int:
    number = _number(cell, "qty per leg")
    if number != number.to_integral_value():
        raise _Reject(f"qty per leg {_text(cell)!r} is not an integer")
    if not 1 <= number <= lim.max_qty_per_leg:
        raise _Reject(f"qty per leg {_fmt(number)} is outside 1..{lim.max_qty_per_leg}")
    return int(number)


def _parse_strike(cell: object, name: str, lim: SignalLimits) -> Decimal:
    number = _number(cell, name)
    if number <= 0:
        raise _Reject(f"{name} strike {_fmt(number)} must be positive")
    if number > _MAX_PLAUSIBLE_STRIKE:
        raise _Reject(f"{name} strike {_text(cell)[:20]!r} is implausibly large")
    grid = Decimal(str(lim.strike_increment))
    if number % grid != 0:
        raise _Reject(f"{name} strike {_fmt(number)} is not on the {_fmt(grid)} strike grid")
    return number


def _number(cell: object, name: str) -> Decimal:
    """A finite Decimal from a cell: int, float, Decimal or text (comma decimals too)."""
    if isinstance(cell, bool):
        raise _Reject(f"{name} {cell!r} is not a number")
    if cell is None or _text(cell) in _EMPTY_CELLS:
        raise _Reject(f"{name} is missing")
    try:
        if isinstance(cell, int | Decimal):
            number = Decimal(cell)
        elif isinstance(cell, float):
            number = Decimal(repr(cell))
        else:
            text = _text(cell).replace(" ", "")
            if "," in text and "." not in text and text.count(",") == 1:
                text = text.replace(",", ".")  # Italian decimal comma
            number = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        raise _Reject(f"{name} {_text(cell)[:40]!r} is not a number") from None
    if not number.is_finite():
        raise _Reject(f"{name} {_text(cell)[:40]!r} is not a finite number")
    return number


_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})", re.ASCII)


def _parse_date(cell: object) -> date | None:
    """``YYYY-MM-DD`` or the sheet's ``M/D/YYYY``; None when it is not a date."""
    if isinstance(cell, datetime):
        return cell.date()
    if isinstance(cell, date):
        return cell
    text = _text(cell)
    try:
        if m := _ISO_DATE.fullmatch(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _US_DATE.fullmatch(text):
            return date(int(m[3]), int(m[1]), int(m[2]))
    except ValueError:
        return None
    return None


def _cell(row: tuple[object, ...], col: int | None) -> object:
    if col is None or col >= len(row):
        return None
    return row[col]


def _text(cell: object) -> str:
    """A cell as stripped text; never raises (``str`` of odd objects may)."""
    if cell is None:
        return ""
    try:
        return str(cell).strip()
    except Exception:
        return ""


def _header(cell: object) -> str:
    """Header/keyword form: case-folded, whitespace trimmed and collapsed."""
    return " ".join(_text(cell).split()).casefold()


def _first(names: Sequence[str], wanted: Sequence[str]) -> int | None:
    return next((i for i, n in enumerate(names) if n in wanted), None)


def _fmt(number: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: 445, 445.5.

    Absurd magnitudes (a pasted 1e999999) use scientific notation so that an
    error message never grows to megabytes.
    """
    if number and not -12 <= number.adjusted() <= 12:
        return f"{number:.3e}"
    text = f"{number:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _view(strategy: Strategy) -> str:
    return "Long (bull put)" if strategy is Strategy.BULL_PUT else "Short (bear call)"
