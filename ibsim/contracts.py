"""The simulated contract universe: QQQ stock and its daily option chain.

Contract ids are a pure function of (expiry, strike, right), so every process
and every run agrees on them without a shared table, and a contract can be
resolved from its id alone (positions, executions and order legs carry only ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from spreadpilot.domain import calendar

SYMBOL = "QQQ"
#: QQQ's real contract id at IB, so logs look familiar.
STOCK_CON_ID = 320227571
OPTION_MULTIPLIER = 100
_OPTION_BASE = 700_000_000
_EPOCH = date(2020, 1, 1)
_MAX_STRIKE = 4000


@dataclass(frozen=True)
class Instrument:
    """One tradable contract as the wire messages describe it."""

    con_id: int
    sec_type: str  # "STK" or "OPT"
    expiry: date | None = None
    strike: float = 0.0
    right: str = ""  # "C", "P" or ""
    symbol: str = SYMBOL
    exchange: str = "SMART"
    currency: str = "USD"

    @property
    def is_option(self) -> bool:
        return self.sec_type == "OPT"

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER if self.is_option else 1

    @property
    def multiplier_text(self) -> str:
        return str(OPTION_MULTIPLIER) if self.is_option else ""

    @property
    def last_trade_date(self) -> str:
        return self.expiry.strftime("%Y%m%d") if self.expiry else ""

    @property
    def local_symbol(self) -> str:
        if not self.is_option or self.expiry is None:
            return SYMBOL
        return occ_symbol(self.expiry, self.strike, self.right)

    @property
    def trading_class(self) -> str:
        return SYMBOL if self.is_option else "NMS"

    @property
    def primary_exchange(self) -> str:
        return "" if self.is_option else "NASDAQ"

    def intrinsic(self, spot: float) -> float:
        if self.right == "C":
            return max(0.0, spot - self.strike)
        if self.right == "P":
            return max(0.0, self.strike - spot)
        return spot

    def describe(self) -> str:
        if not self.is_option:
            return SYMBOL
        return f"{SYMBOL} {self.last_trade_date} {self.strike:g}{self.right}"


def occ_symbol(expiry: date, strike: float, right: str) -> str:
    """OCC option symbol: root padded to 6, YYMMDD, C/P, strike x 1000 in 8 digits."""
    return f"{SYMBOL:<6}{expiry.strftime('%y%m%d')}{right}{round(strike * 1000):08d}"


def option_con_id(expiry: date, strike: float, right: str) -> int:
    day = (expiry - _EPOCH).days
    return _OPTION_BASE + day * 2 * _MAX_STRIKE + round(strike) * 2 + (1 if right == "C" else 0)


def decode_option_con_id(con_id: int) -> tuple[date, float, str] | None:
    offset = con_id - _OPTION_BASE
    if offset < 0:
        return None
    day, rest = divmod(offset, 2 * _MAX_STRIKE)
    strike, is_call = divmod(rest, 2)
    if strike <= 0:
        return None
    return _EPOCH + timedelta(days=day), float(strike), "C" if is_call else "P"


STOCK = Instrument(con_id=STOCK_CON_ID, sec_type="STK")


def normalize_right(right: str) -> str:
    upper = right.strip().upper()
    if upper in ("C", "CALL"):
        return "C"
    if upper in ("P", "PUT"):
        return "P"
    return upper


@dataclass
class ContractQuery:
    """The contract fields of a request; empty values are wildcards."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


@dataclass
class Chain:
    """Daily expiries (every NYSE session) and $1 strikes around a reference spot.

    The strike range is fixed at start from the reference spot so that the chain
    does not shift under a running client; ``width`` strikes on each side cover
    any realistic intraday move.
    """

    reference_spot: float
    first_day: date
    days: int = 45
    width: int = 60
    _expiries: list[date] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        start = self.first_day - timedelta(days=7)
        self._expiries = calendar.trading_days(start, self.first_day + timedelta(days=self.days))

    @property
    def strikes(self) -> list[float]:
        centre = round(self.reference_spot)
        return [float(k) for k in range(max(1, centre - self.width), centre + self.width + 1)]

    def expiries(self, today: date | None = None) -> list[date]:
        if today is None:
            return list(self._expiries)
        return [d for d in self._expiries if d >= today]

    def is_listed(self, expiry: date, strike: float) -> bool:
        if expiry not in self._expiries:
            return False
        if not float(strike).is_integer():
            return False
        centre = round(self.reference_spot)
        return centre - self.width <= strike <= centre + self.width

    def option(self, expiry: date, strike: float, right: str) -> Instrument:
        return Instrument(
            con_id=option_con_id(expiry, strike, right),
            sec_type="OPT",
            expiry=expiry,
            strike=float(strike),
            right=right,
        )

    def resolve(self, con_id: int) -> Instrument | None:
        """The instrument with this contract id, if it is listed."""
        if con_id == STOCK_CON_ID:
            return STOCK
        decoded = decode_option_con_id(con_id)
        if decoded is None:
            return None
        expiry, strike, right = decoded
        if not self.is_listed(expiry, strike):
            return None
        return self.option(expiry, strike, right)

    def match(self, query: ContractQuery, today: date, limit: int = 2000) -> list[Instrument]:
        """Every listed instrument matching the query (IB's reqContractDetails rules)."""
        if query.con_id:
            resolved = self.resolve(query.con_id)
            return [resolved] if resolved else []
        if query.symbol.upper() not in ("", SYMBOL) or query.currency.upper() not in ("", "USD"):
            return []
        if query.exchange.upper() not in ("", "SMART", "NASDAQ", "CBOE", "ISLAND"):
            return []
        sec_type = query.sec_type.upper()
        if sec_type == "STK":
            if query.local_symbol and query.local_symbol.strip().upper() != SYMBOL:
                return []
            return [STOCK]
        if sec_type not in ("OPT",):
            return []
        if query.trading_class and query.trading_class.upper() != SYMBOL:
            return []
        if query.multiplier and _as_float(query.multiplier) != OPTION_MULTIPLIER:
            return []
        if query.local_symbol:
            return self._match_local_symbol(query.local_symbol)
        right = normalize_right(query.right)
        rights = [right] if right in ("C", "P") else (["C", "P"] if not right else [])
        expiries = self._match_expiries(query.last_trade_date, today)
        strikes = [float(query.strike)] if query.strike else self.strikes
        found: list[Instrument] = []
        for expiry in expiries:
            for strike in strikes:
                if not self.is_listed(expiry, strike):
                    continue
                for r in rights:
                    found.append(self.option(expiry, strike, r))
                    if len(found) >= limit:
                        return found
        return found

    def _match_expiries(self, text: str, today: date) -> list[date]:
        text = text.strip()
        if not text:
            return self.expiries(today)
        digits = text.split()[0].replace("-", "")
        if len(digits) == 8:
            try:
                wanted = datetime.strptime(digits, "%Y%m%d").date()
            except ValueError:
                return []
            return [wanted] if wanted in self._expiries else []
        if len(digits) == 6:
            return [d for d in self.expiries(today) if d.strftime("%Y%m") == digits]
        return []

    def _match_local_symbol(self, text: str) -> list[Instrument]:
        compact = text.replace(" ", "").upper()
        if not compact.startswith(SYMBOL) or len(compact) != len(SYMBOL) + 15:
            return []
        body = compact[len(SYMBOL) :]
        try:
            expiry = datetime.strptime(body[:6], "%y%m%d").date()
            right = body[6]
            strike = int(body[7:]) / 1000
        except ValueError:
            return []
        if right not in ("C", "P") or not self.is_listed(expiry, strike):
            return []
        return [self.option(expiry, strike, right)]


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
