"""``POST /flatten``: closing one unpaired position (SPEC 4 "Assignment") on ibsim.

The positions are made the way they arise: spreads opened by the sidecar's own
ladder, then another API client on the same account (a person in TWS) buys back
a short leg, sells a long one, or trades shares. Every check reads ibsim's own
book: what was ordered (one market order on one contract, the closing side,
at most the unpaired quantity) and what is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sidecar_harness import TRADE_DAY, FollowerSpec, Person, Stack, wait_for

from ibsim.contracts import STOCK_CON_ID, option_con_id

pytestmark = pytest.mark.integration

ACCOUNT = "DU0000001"
DAY = TRADE_DAY.strftime("%Y%m%d")
BULL_PUT = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}
BEAR_CALL = {"strategy": "bear_call", "qty_per_leg": 1, "strike_long": 485, "strike_short": 480}
P475, P480 = option_con_id(TRADE_DAY, 475.0, "P"), option_con_id(TRADE_DAY, 480.0, "P")
C480, C485 = option_con_id(TRADE_DAY, 480.0, "C"), option_con_id(TRADE_DAY, 485.0, "C")

PersonFactory = Callable[[int, str], Person]


def open_spread(stack: Stack, body: dict[str, Any]) -> None:
    r = stack.post_signal(**body, follower_id="alice")
    assert r.status_code == 202, r.text
    ex = r.json()["executions"][0]["execution_id"]
    assert stack.wait_final(ex, timeout=60)["state"] == "FILLED"


def book(stack: Stack) -> dict[int, float]:
    return {k: q for k, q in stack.sim.positions(ACCOUNT).items() if q}


def orphans(stack: Stack) -> list[dict[str, Any]]:
    r = stack.client.get("/positions/alice")
    assert r.status_code == 200, r.text
    return list(r.json()["orphans"])


def flatten(stack: Stack, kind: str, con_id: int, **extra: Any) -> Any:
    return stack.client.post(
        "/flatten", json={"follower_id": "alice", "kind": kind, "con_id": con_id, **extra}
    )


def test_orphan_long_leg_is_sold_and_paired_legs_are_never_touched(
    make_stack: Any, person_for: PersonFactory
) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)])
    open_spread(stack, BULL_PUT)
    open_spread(stack, BEAR_CALL)
    person = person_for(stack.port_of("alice"), ACCOUNT)
    assert person.market_order(person.option(480), "BUY", 1) == "Filled"  # short put gone
    wait_for(lambda: book(stack) == {P475: 1, C485: 1, C480: -1}, 10)
    assert [(o["kind"], o["con_id"]) for o in orphans(stack)] == [("SHORT_LEG_MISSING", P475)]

    # Only that unpaired position can be flattened: wrong kind, a paired leg, unknown ids.
    assert flatten(stack, "STOCK_POSITION", P475).status_code == 404
    assert flatten(stack, "SHORT_LEG_MISSING", C485).status_code == 404
    assert flatten(stack, "NAKED_SHORT", C480).status_code == 404
    assert flatten(stack, "SHORT_LEG_MISSING", 123).status_code == 404
    assert flatten(stack, "LONG", P475).status_code == 422
    # Halted: no orders at all. Reduce-only: closing orders are what it is for.
    assert stack.client.post("/halt", json={"mode": "halt"}).status_code == 200
    refused = flatten(stack, "SHORT_LEG_MISSING", P475)
    assert refused.status_code == 409 and "HALTED" in refused.text
    assert stack.sim.orders(prefix="flat-") == []
    assert stack.client.post("/halt", json={"mode": "reduce_only"}).status_code == 200

    r = flatten(stack, "SHORT_LEG_MISSING", P475, qty=5)  # more than unpaired: capped
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "FILLED" and result["qty"] == 1 and result["action"] == "SELL"
    assert result["order_ref"] == f"flat-alice-{P475}-{DAY}" and result["avg_price"] > 0
    wait_for(lambda: book(stack) == {C485: 1, C480: -1}, 10)  # the call spread untouched
    [order] = stack.sim.orders(prefix="flat-")
    assert order.ticket.contract.sec_type == "OPT" and order.ticket.order_type == "MKT"
    assert (order.ticket.action, order.ticket.total_quantity) == ("SELL", 1)
    alert = stack.wait_alert("ASSIGNMENT_RESOLVED", "alice")
    assert alert["id"] == f"{result['order_ref']}:ASSIGNMENT_RESOLVED"
    assert alert["params"]["con_id"] == P475 and alert["params"]["status"] == "FILLED"
    # Done: a retry finds nothing to flatten and sends nothing.
    assert flatten(stack, "SHORT_LEG_MISSING", P475).status_code == 404
    assert len(stack.sim.orders(prefix="flat-")) == 1


def test_stock_either_way_and_a_naked_short_are_closed_never_opened(
    make_stack: Any, person_for: PersonFactory
) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)])
    person = person_for(stack.port_of("alice"), ACCOUNT)

    # Short shares (a short call assigned): bought back.
    assert person.market_order(person.stock(), "SELL", 100) == "Filled"
    wait_for(lambda: book(stack) == {STOCK_CON_ID: -100}, 10)
    r = flatten(stack, "STOCK_POSITION", STOCK_CON_ID)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["action"], r.json()["qty"]) == ("FILLED", "BUY", 100)
    wait_for(lambda: book(stack) == {}, 10)
    [stock_order] = stack.sim.orders(prefix="flat-")
    assert stock_order.ticket.contract.sec_type == "STK"

    # The same contract again on the same day: the flatten already filled, so the
    # sidecar refuses a second order and asks a person (IB's view may lag ours).
    assert person.market_order(person.stock(), "BUY", 100) == "Filled"
    wait_for(lambda: book(stack) == {STOCK_CON_ID: 100}, 10)
    again = flatten(stack, "STOCK_POSITION", STOCK_CON_ID)
    assert again.status_code == 409 and "already filled today" in again.text
    refused = stack.wait_alert("ASSIGNMENT_DETECTED", "alice")
    assert refused["severity"] == "CRITICAL"
    assert len(stack.sim.orders(prefix="flat-")) == 1 and book(stack) == {STOCK_CON_ID: 100}
    assert person.market_order(person.stock(), "SELL", 100) == "Filled"

    # A naked short (its long sold by hand): bought back, nothing more.
    open_spread(stack, BULL_PUT)
    assert person.market_order(person.option(475), "SELL", 1) == "Filled"
    wait_for(lambda: book(stack) == {P480: -1}, 10)
    r = flatten(stack, "NAKED_SHORT", P480)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["action"], r.json()["qty"]) == ("FILLED", "BUY", 1)
    wait_for(lambda: book(stack) == {}, 10)
    legged = stack.wait_alert("LEGGED_POSITION", "alice")
    assert legged["params"]["kind"] == "NAKED_SHORT" and legged["params"]["status"] == "FILLED"


def test_a_retry_joins_the_working_order(make_stack: Any, person_for: PersonFactory) -> None:
    stack = make_stack(
        [FollowerSpec("alice", ACCOUNT)], settings={"sidecar_liquidation_fill_wait_seconds": 0.5}
    )
    person = person_for(stack.port_of("alice"), ACCOUNT)
    assert person.market_order(person.stock(), "BUY", 100) == "Filled"
    wait_for(lambda: book(stack) == {STOCK_CON_ID: 100}, 10)
    stack.sim.control(lambda c: c.pause_fills())
    first = flatten(stack, "STOCK_POSITION", STOCK_CON_ID)
    assert first.status_code == 200 and first.json()["status"] == "WORKING", first.text
    unfilled = stack.wait_alert("ASSIGNMENT_DETECTED", "alice")
    assert unfilled["severity"] == "CRITICAL" and "retry" in unfilled["message"]
    second = flatten(stack, "STOCK_POSITION", STOCK_CON_ID)
    assert second.status_code == 200 and second.json()["order_id"] == first.json()["order_id"]
    assert len(stack.sim.orders(prefix="flat-")) == 1
    stack.sim.control(lambda c: c.resume_fills())
    wait_for(lambda: book(stack) == {}, 10)
    assert flatten(stack, "STOCK_POSITION", STOCK_CON_ID).status_code == 404
    assert len(stack.sim.orders(prefix="flat-")) == 1
