"""Followers, sizing and trading modes (SPEC sections 1, 3, 5)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from spreadpilot.domain.followers import (
    Follower,
    FollowerState,
    GatewayEndpoint,
    TradingMode,
    size_order,
)

VALID_IBAN = "DE89 3704 0044 0532 0130 00"


def doc(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "_id": "follower123",
        "name": "Mario Rossi",
        "email": "mario@example.com",
        "telegram_chat_id": 123456789,
        "iban": VALID_IBAN,
        "gateway": {"host": "ib-gw-1", "port": 4002, "client_id": 7},
        "account": "DU1234567",
    }
    data.update(overrides)
    return data


def test_defaults_and_mongo_round_trip() -> None:
    f = Follower.model_validate(doc())
    assert f.id == "follower123"
    assert (f.qty_multiplier, f.max_open_spreads, f.commission_pct, f.commission_currency) == (
        1.0, 1, 20.0, "USD",
    )  # fmt: skip
    assert f.enabled and f.state is FollowerState.ACTIVE and f.accepts_new_entries
    assert f.telegram_chat_id == "123456789"
    assert f.gateway == GatewayEndpoint(host="ib-gw-1", port=4002, client_id=7)
    stored = f.model_dump(by_alias=True)
    assert stored["_id"] == "follower123" and "id" not in stored
    assert Follower.model_validate(stored) == f
    assert (
        Follower.model_validate(doc(created_at="2026-01-01")).id == "follower123"
    )  # extra ignored


def test_iban_is_normalised_and_masked_in_repr() -> None:
    f = Follower.model_validate(doc())
    assert f.iban == "DE89370400440532013000"
    assert "370400440532013" not in repr(f) and "370400440532013" not in str(f)
    assert f.masked_iban == "DE89**************3000"
    assert "DE89**************3000" in repr(f)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"_id": "Follower 1"}, "_id"),
        ({"_id": ""}, "_id"),
        ({"gateway": {"host": "h", "port": 70000, "client_id": 1}}, "port"),
        ({"gateway": {"host": "h", "port": 0, "client_id": 1}}, "port"),
        ({"account": "1234"}, "account"),
        ({"iban": "DE00370400440532013000"}, "mod-97"),
        ({"iban": "not an iban"}, "IBAN"),
        ({"email": "nope"}, "email"),
        ({"commission_pct": 120}, "commission_pct"),
        ({"commission_pct": -1}, "commission_pct"),
        ({"qty_multiplier": 0}, "qty_multiplier"),
        ({"qty_multiplier": float("inf")}, "qty_multiplier"),
        ({"max_qty_per_leg": 0}, "max_qty_per_leg"),
        ({"commission_currency": "euro"}, "commission_currency"),
        ({"state": "SLEEPING"}, "state"),
    ],
)
def test_validation_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Follower.model_validate(doc(**overrides))
    assert field in str(info.value)


def test_disabled_or_halted_follower_takes_no_new_entries() -> None:
    assert not Follower.model_validate(doc(enabled=False)).accepts_new_entries
    assert not Follower.model_validate(doc(state="HALTED")).accepts_new_entries


def test_size_order() -> None:
    f = Follower.model_validate(doc(qty_multiplier=0.5, max_qty_per_leg=20))
    assert size_order(10, f) == 5
    assert size_order(3, f) == 1  # floor(1.5)
    assert size_order(1, f) == 0  # 0 = skip
    assert size_order(100, f) == 20  # capped
    g = Follower.model_validate(doc(qty_multiplier=0.29, max_qty_per_leg=1000))
    assert size_order(100, g) == 29  # float would say 28.999999999999996
    with pytest.raises(ValueError):
        size_order(-1, f)


@given(
    qty=st.integers(min_value=0, max_value=1000),
    mult=st.floats(min_value=0.01, max_value=100, allow_nan=False),
    cap=st.integers(min_value=1, max_value=10_000),
)
def test_size_order_never_exceeds_cap_or_scaled_qty(qty: int, mult: float, cap: int) -> None:
    f = Follower.model_validate(doc(qty_multiplier=mult, max_qty_per_leg=cap))
    n = size_order(qty, f)
    assert 0 <= n <= cap
    assert n <= qty * mult + 1e-9


def test_trading_modes() -> None:
    assert TradingMode.ACTIVE.allows_opening() and TradingMode.ACTIVE.allows_closing()
    assert not TradingMode.REDUCE_ONLY.allows_opening() and TradingMode.REDUCE_ONLY.allows_closing()
    assert not TradingMode.HALTED.allows_opening() and not TradingMode.HALTED.allows_closing()
