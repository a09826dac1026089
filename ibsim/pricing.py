"""Black-Scholes prices and greeks with a simple equity volatility smile.

Pure functions of their arguments. Time to expiry is measured in minutes until
the option's expiry close so that a 0DTE option's time value decays smoothly to
exactly zero at 16:00 (13:00 on early-close days). The interest rate and the
dividend yield are zero: over one day they move prices by far less than a tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINUTES_PER_YEAR = 365.0 * 24.0 * 60.0
_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT_2))


def norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / _SQRT_2PI


@dataclass(frozen=True)
class Smile:
    """Implied vol as a quadratic in log-moneyness ``ln(K/S)``.

    The negative slope makes puts below spot dearer than calls above it, the
    shape of the index-ETF skew; the curvature lifts both wings.
    """

    atm_vol: float = 0.22
    slope: float = -1.2
    curvature: float = 6.0
    floor: float = 0.05
    cap: float = 3.0

    def vol(self, spot: float, strike: float) -> float:
        if spot <= 0 or strike <= 0:
            return self.atm_vol
        x = math.log(strike / spot)
        value = self.atm_vol + self.slope * x + self.curvature * x * x
        return min(self.cap, max(self.floor, value))


@dataclass(frozen=True)
class Greeks:
    """Per-share price and IB-convention greeks (vega per vol point, theta per day)."""

    price: float
    vol: float
    delta: float
    gamma: float
    vega: float
    theta: float


def black_scholes(spot: float, strike: float, minutes: float, vol: float, right: str) -> Greeks:
    """Price and greeks of a European option; at or past expiry, intrinsic value."""
    is_call = right == "C"
    intrinsic = max(0.0, spot - strike) if is_call else max(0.0, strike - spot)
    if minutes <= 0 or vol <= 0 or spot <= 0:
        in_the_money = spot > strike if is_call else spot < strike
        delta = (1.0 if is_call else -1.0) if in_the_money else 0.0
        return Greeks(intrinsic, vol, delta, 0.0, 0.0, 0.0)
    t = minutes / MINUTES_PER_YEAR
    sqrt_t = math.sqrt(t)
    sd = vol * sqrt_t
    d1 = (math.log(spot / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if is_call:
        price = spot * norm_cdf(d1) - strike * norm_cdf(d2)
        delta = norm_cdf(d1)
    else:
        price = strike * norm_cdf(-d2) - spot * norm_cdf(-d1)
        delta = norm_cdf(d1) - 1.0
    pdf = norm_pdf(d1)
    gamma = pdf / (spot * sd)
    vega = spot * pdf * sqrt_t / 100.0
    theta = -(spot * pdf * vol) / (2.0 * sqrt_t) / 365.0
    return Greeks(max(price, intrinsic), vol, delta, gamma, vega, theta)


def tick_width_cents(theo: float) -> int:
    """Quoted bid/ask width in cents: a penny for cheap options, wider for dear ones."""
    if theo < 0.5:
        return 1
    if theo < 2.0:
        return 2
    if theo < 5.0:
        return 3
    return 5


def quote_around(theo: float) -> tuple[float, float]:
    """Bid and ask on the penny grid bracketing a theoretical value."""
    width = tick_width_cents(theo)
    bid_cents = math.floor(theo * 100 - width / 2 + 1e-9)
    bid_cents = max(0, bid_cents)
    ask_cents = max(bid_cents + width, 1)
    return bid_cents / 100, ask_cents / 100
