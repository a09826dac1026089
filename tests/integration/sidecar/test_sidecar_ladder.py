"""Ladder scenarios through HTTP against ibsim, for a bull put and a bear call.

Each scenario checks the end state, the SPEC alert with its params (read back
from the Redis stream), and what ibsim saw: exactly one combo order, BUY at a
negative limit, with the right legs, or no order at all.

Fills are steered with ibsim's faults: fills are paused while the ladder walks,
then the spot is moved so the working limit becomes marketable (bull put: spot
down, bear call: spot up, both raise the credit). Partial fills come from
ibsim's seeded fill model: ``partial_seed`` picks a seed whose first fill event
is a partial one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from sidecar_harness import FollowerSpec, Stack, wait_for

from ibsim.orders import fill_rng

pytestmark = pytest.mark.integration

ACCOUNT = "DU0000001"


@dataclass(frozen=True)
class Case:
    strategy: str
    strike_long: float
    strike_short: float
    right: str
    shift: float  # spot move that makes the credit richer (marketable)
    floor: float  # a MIN_PRICE one tick above the natural credit at 10:00
    far_long: float  # a far out-of-the-money spread: mid credit below MIN_PRICE
    far_short: float


BULL_PUT = Case("bull_put", 475, 480, "P", -1.0, 1.05, 471, 476)
BEAR_CALL = Case("bear_call", 485, 480, "C", +1.0, 1.07, 489, 484)
CASES = [pytest.param(BULL_PUT, id="bull_put"), pytest.param(BEAR_CALL, id="bear_call")]


def partial_seed(account: str = ACCOUNT, qty: int = 6) -> int:
    """A seed whose first order's first fill event comes soon and is partial, and
    whose second event is far off (ibsim's seeded model: threshold, partial draw,
    partial size, next threshold, drawn in that order)."""
    for seed in range(20_000):
        rng = fill_rng(seed, account, 1)  # the account's first order
        first = rng.expovariate(1.0)
        partial = rng.random() < 0.5
        rng.randint(1, qty - 1)
        second = rng.expovariate(1.0)
        if first < 0.5 and partial and second > 3.0:
            return seed
    raise AssertionError("no partial seed")


def signal(stack: Stack, case: Case, qty: int = 1, **extra: Any) -> str:
    r = stack.post_signal(
        strategy=case.strategy,
        qty_per_leg=qty,
        strike_long=case.strike_long,
        strike_short=case.strike_short,
        follower_id="alice",
        **extra,
    )
    assert r.status_code == 202, r.text
    executions = r.json()["executions"]
    assert len(executions) == 1
    return str(executions[0]["execution_id"])


def one_order(stack: Stack, order_ref: str, case: Case) -> Any:
    """Exactly one order for the execution: a BUY combo at a negative limit, right legs."""
    orders = stack.orders(order_ref)
    assert len(orders) == 1, [o.ticket for o in orders]
    order = orders[0]
    ticket = order.ticket
    assert ticket.contract.sec_type == "BAG"
    assert ticket.action == "BUY"
    assert ticket.lmt_price is not None and ticket.lmt_price < 0
    legs = {leg.action: leg.con_id for leg in ticket.legs}
    by_con = {leg.instrument.con_id: leg.instrument for leg in order.legs}
    long_i, short_i = by_con[legs["BUY"]], by_con[legs["SELL"]]
    assert (long_i.right, long_i.strike) == (case.right, case.strike_long)
    assert (short_i.right, short_i.strike) == (case.right, case.strike_short)
    return order


def working_at_rung(stack: Stack, execution_id: str, rung: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        rec = stack.execution(execution_id)
        ok = rec["state"] in ("WORKING", "PARTIAL") and (rec.get("rung") or 0) >= rung
        return rec if ok and rec.get("submitted") else None

    return wait_for(check, 30, what=f"rung {rung}")


@pytest.mark.parametrize("case", CASES)
def test_filled_at_first_rung(make_stack: Any, case: Case) -> None:
    # A long first rung (3 s wall) so the spot moves while rung 0 is working.
    stack = make_stack([FollowerSpec("alice", ACCOUNT)], settings={"timeout_seconds": 60.0})
    stack.sim.control(lambda c: c.pause_fills())
    ex = signal(stack, case)
    rec = working_at_rung(stack, ex, 0)
    assert rec["rung"] == 0
    stack.sim.control(lambda c: c.shift_spot(case.shift))
    stack.sim.control(lambda c: c.resume_fills())
    rec = stack.wait_final(ex)
    assert rec["state"] == "FILLED"
    assert rec["rung"] == 0 and rec["filled_qty"] == 1
    order = one_order(stack, rec["order_ref"], case)
    assert order.status == "Filled"
    alert = stack.wait_alert("EXECUTION_FILLED", "alice")
    p = alert["params"]
    assert alert["severity"] == "INFO"
    assert p["rung"] == 0 and p["fill_credit"] > 0 and p["combo_price"] < 0
    for key in ("slippage_vs_mid", "slippage_vs_natural", "mid", "natural"):
        assert p[key] is not None
    assert p["strategy"] == case.strategy
    # The same alert also went to the Pub/Sub topic the fan-out consumes.
    received: list[dict[str, Any]] = []

    def on_pubsub() -> bool:
        received.extend(stack.pubsub_alerts())
        return any(a["id"] == alert["id"] for a in received)

    wait_for(on_pubsub, 15, interval=0.2)


@pytest.mark.parametrize("case", CASES)
def test_filled_at_later_rung(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)], settings={"timeout_seconds": 10.0})
    stack.sim.control(lambda c: c.pause_fills())
    ex = signal(stack, case)
    working_at_rung(stack, ex, 3)
    stack.sim.control(lambda c: c.shift_spot(case.shift))
    stack.sim.control(lambda c: c.resume_fills())
    rec = stack.wait_final(ex)
    assert rec["state"] == "FILLED" and rec["rung"] >= 3
    order = one_order(stack, rec["order_ref"], case)
    # Modified in place: the one order now carries the later rung's limit.
    assert order.ticket.lmt_price == pytest.approx(rec["ladder"][rec["rung"]]["limit"])
    assert order.order_id == rec["order_id"]
    p = stack.wait_alert("EXECUTION_FILLED", "alice")["params"]
    assert p["rung"] == rec["rung"]


@pytest.mark.parametrize("case", CASES)
def test_partial_then_filled(make_stack: Any, case: Case) -> None:
    """The seed makes the first fill event (resting between mid and natural) partial;
    the ladder then reaches natural and the remainder fills."""
    stack = make_stack(
        [FollowerSpec("alice", ACCOUNT)], seed=partial_seed(), settings={"timeout_seconds": 16.0}
    )
    ex = signal(stack, case, qty=6)
    rec = stack.wait_final(ex)
    assert rec["state"] == "FILLED" and rec["filled_qty"] == 6
    partials = [e for e in rec["events"] if e["state"] == "PARTIAL"]
    assert partials and 0 < partials[0]["detail"]["filled_qty"] < 6
    order = one_order(stack, rec["order_ref"], case)
    assert order.filled == 6
    p = stack.wait_alert("EXECUTION_FILLED", "alice")["params"]
    assert p["filled_qty"] == 6 and p["qty"] == 6


@pytest.mark.parametrize("case", CASES)
def test_limit_reached_cancels_remainder(make_stack: Any, case: Case) -> None:
    """MIN_PRICE just above natural: the ladder only rests between mid and natural,
    one partial fill happens (seed), and the unfilled remainder is cancelled."""
    stack = make_stack(
        [FollowerSpec("alice", ACCOUNT)],
        seed=partial_seed(),
        settings={"timeout_seconds": 16.0, "min_price": case.floor},
    )
    ex = signal(stack, case, qty=6)
    rec = stack.wait_final(ex, timeout=60)
    assert rec["state"] == "LIMIT_REACHED"
    filled = rec["filled_qty"]
    assert 0 < filled < 6
    order = one_order(stack, rec["order_ref"], case)
    assert order.status == "Cancelled" and order.filled == filled
    alert = stack.wait_alert("LIMIT_REACHED", "alice")
    p = alert["params"]
    assert alert["severity"] == "CRITICAL"
    assert p["attempts"] == len(rec["ladder"]) >= 2
    assert p["initial_limit"] == rec["ladder"][0]["limit"]
    assert p["final_limit"] == rec["ladder"][-1]["limit"] == -case.floor
    assert p["filled_qty"] == filled and p["qty"] == 6
    pf = stack.wait_alert("PARTIAL_FILL", "alice")
    assert pf["severity"] == "WARNING" and pf["params"]["filled_qty"] == filled


@pytest.mark.parametrize("case", CASES)
def test_limit_reached_without_fill(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)], settings={"timeout_seconds": 5.0})
    stack.sim.control(lambda c: c.pause_fills())
    ex = signal(stack, case, qty=2)
    rec = stack.wait_final(ex, timeout=60)
    assert rec["state"] == "LIMIT_REACHED" and rec["filled_qty"] == 0
    order = one_order(stack, rec["order_ref"], case)
    assert order.status == "Cancelled"
    p = stack.wait_alert("LIMIT_REACHED", "alice")["params"]
    assert p["attempts"] == 10 and p["filled_qty"] == 0
    assert p["final_limit"] < 0 and p["initial_limit"] < p["final_limit"]
    assert not stack.alerts("PARTIAL_FILL")


@pytest.mark.parametrize("case", CASES)
def test_mid_too_low_sends_nothing(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)])
    r = stack.post_signal(
        strategy=case.strategy,
        qty_per_leg=1,
        strike_long=case.far_long,
        strike_short=case.far_short,
        follower_id="alice",
    )
    assert r.status_code == 202, r.text
    ex = r.json()["executions"][0]["execution_id"]
    rec = stack.wait_final(ex)
    assert rec["state"] == "MID_TOO_LOW"
    assert stack.sim.orders(prefix="sp-") == []
    alert = stack.wait_alert("MID_TOO_LOW", "alice")
    p = alert["params"]
    assert p["mid"] < 0.70 and p["threshold"] == 0.70
    assert p["strategy"] == case.strategy
    assert (p["strike_long"], p["strike_short"]) == (case.far_long, case.far_short)


@pytest.mark.parametrize("case", CASES)
def test_no_margin_sends_nothing(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT, equity=100.0)])
    ex = signal(stack, case, qty=5)
    rec = stack.wait_final(ex)
    assert rec["state"] == "NO_MARGIN"
    assert stack.sim.orders(prefix="sp-") == []
    alert = stack.wait_alert("NO_MARGIN", "alice")
    p = alert["params"]
    assert p["init_margin_change"] > p["available_funds"]
    for key in ("maint_margin_change", "equity_with_loan", "available_funds"):
        assert p[key] is not None
    # The message a person reads carries the figures too.
    assert f"${p['init_margin_change']:,.2f}" in alert["message"]
    assert f"available funds ${p['available_funds']:,.2f}" in alert["message"]


@pytest.mark.parametrize("case", CASES)
def test_order_rejected_by_ib(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)])
    stack.sim.control(lambda c: c.reject_next_orders(1))
    ex = signal(stack, case)
    rec = stack.wait_final(ex)
    assert rec["state"] == "REJECTED"
    alert = stack.wait_alert("GATEWAY_UNREACHABLE", "alice")
    assert alert["severity"] == "CRITICAL"
    assert alert["params"]["error_code"] == 201
    assert "reject" in alert["params"]["error_text"].lower()


@pytest.mark.parametrize("case", CASES)
def test_gateway_down(make_stack: Any, case: Case) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT, down=True)])
    ex = signal(stack, case)
    rec = stack.wait_final(ex)
    assert rec["state"] == "FAILED"
    assert rec.get("order_id") is None
    alerts = [
        a
        for a in stack.alerts("GATEWAY_UNREACHABLE", "alice")
        if a["params"].get("execution_id") == ex
    ]
    assert alerts and alerts[-1]["severity"] == "CRITICAL"
    assert alerts[-1]["params"]["error_text"]


def test_refused_rung_move_cancels_the_order_ib_still_works(make_stack: Any) -> None:
    """IB refuses the move to rung 1 (error 201) and keeps the order working at rung 0.

    ib_async marks the order Cancelled locally on that error; the executor asks
    IB, finds the order still live, cancels it and waits for IB to confirm, and
    the execution ends REJECTED with a CRITICAL alert. One order, never re-placed,
    never left working untracked.
    """
    stack = make_stack([FollowerSpec("alice", ACCOUNT)], settings={"timeout_seconds": 10.0})
    stack.sim.control(lambda c: c.pause_fills())
    stack.sim.control(lambda c: c.reject_next_modifications(1))
    ex = signal(stack, BULL_PUT, qty=2)
    rec = stack.wait_final(ex, timeout=60)
    assert rec["state"] == "REJECTED", rec
    order = one_order(stack, rec["order_ref"], BULL_PUT)
    assert order.status == "Cancelled" and order.filled == 0
    # IB never took the move: the order was cancelled at rung 0's limit.
    assert order.ticket.lmt_price == pytest.approx(rec["ladder"][0]["limit"])
    assert rec["limit"] == pytest.approx(rec["ladder"][0]["limit"]) and rec["rung"] == 0
    assert rec["modify_rejected"]["rung"] == 1
    assert rec["modify_rejected"]["error_code"] == 201
    alert = stack.wait_alert("GATEWAY_UNREACHABLE", "alice")
    p = alert["params"]
    assert alert["severity"] == "CRITICAL"
    assert p["error_code"] == 201 and "modify" in p["error_text"]
    assert p["refused_rung"] == 1 and p["refused_limit"] == pytest.approx(rec["ladder"][1]["limit"])
    assert p["final_limit"] == pytest.approx(rec["ladder"][0]["limit"]) and p["filled_qty"] == 0
    assert not stack.alerts("LIMIT_REACHED") and not stack.alerts("EXECUTION_FILLED")
    # Nothing works on at IB afterwards, and no position was opened.
    stack.sim.control(lambda c: c.shift_spot(BULL_PUT.shift))
    stack.sim.control(lambda c: c.resume_fills())
    time.sleep(0.5)
    assert len(stack.orders(rec["order_ref"])) == 1
    assert not any(stack.sim.positions(ACCOUNT).values())
