"""The kill switch: close everything, halt, resume; with the stores down too."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sidecar_harness import FollowerSpec, Stack, wait_for

pytestmark = pytest.mark.integration

BODY = {"strategy": "bull_put", "qty_per_leg": 2, "strike_long": 475, "strike_short": 480}


def open_spreads(stack: Stack, followers: list[str]) -> dict[str, str]:
    """Fill one bull put per follower; returns follower -> execution id."""
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**BODY)
    assert r.status_code == 202, r.text
    ids = {e["follower_id"]: e["execution_id"] for e in r.json()["executions"]}
    assert set(ids) == set(followers)
    for ex in ids.values():
        stack.wait_state(ex, {"WORKING"})
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    for ex in ids.values():
        assert stack.wait_final(ex)["state"] == "FILLED"
    for f in followers:
        account = stack.followers[f].account
        wait_for(lambda a=account: len(stack.sim.positions(a)) == 2, 10)
    return ids


def flat(stack: Stack, follower_id: str) -> bool:
    positions = stack.sim.positions(stack.followers[follower_id].account)
    return all(q == 0 for q in positions.values())


def test_close_all_reaches_its_handler_and_flattens_everyone(make_stack: Any) -> None:
    stack = make_stack([FollowerSpec("alice", "DU0000001"), FollowerSpec("bob", "DU0000002")])
    open_spreads(stack, ["alice", "bob"])

    r = stack.client.post("/close/all", json={"reason": "test"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "all"  # not the {follower_id} route with id "all"
    by_follower = {f["follower_id"]: f for f in body["followers"]}
    assert set(by_follower) == {"alice", "bob"}
    for f in by_follower.values():
        assert [c["status"] for c in f.get("closed", [])] == ["FILLED"], body
    wait_for(lambda: flat(stack, "alice") and flat(stack, "bob"), 10)
    # The closing order was ONE combo per spread, a SELL of the BUY-long/SELL-short combo.
    closes = stack.sim.orders(prefix="liq-")
    assert len(closes) == 2
    for o in closes:
        assert o.ticket.contract.sec_type == "BAG" and o.ticket.order_type == "MKT"
        assert o.ticket.action == "SELL"

    # New entries are halted until resumed.
    status = stack.client.get("/status").json()
    assert status["kill_switch"]["global"] == "REDUCE_ONLY"
    again = stack.post_signal(**{**BODY, "qty_per_leg": 1})
    for e in again.json()["executions"]:
        assert stack.wait_final(e["execution_id"])["state"] == "SKIPPED"
    assert stack.wait_alert("KILL_SWITCH")
    assert stack.client.post("/resume", json={}).status_code == 200
    assert stack.client.get("/status").json()["kill_switch"]["global"] == "ACTIVE"


def test_close_and_halt_work_with_all_stores_down(make_stack: Any) -> None:
    stack = make_stack(
        [FollowerSpec("alice", "DU0000001"), FollowerSpec("bob", "DU0000002")], proxies=True
    )
    open_spreads(stack, ["alice", "bob"])
    for proxy in stack.proxies.values():
        proxy.cut()
    # Prove they are down: a record read now fails.
    assert stack.client.get("/executions/whatever").status_code == 503

    started = time.monotonic()
    r = stack.client.post("/halt", json={"follower_id": "bob", "mode": "halt"})
    assert r.status_code == 200, r.text
    assert r.json()["kill_switch"]["followers"]["bob"] == "HALTED"

    r = stack.client.post("/close/alice", json={"reason": "stores down"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "alice"
    assert [c["status"] for c in body["closed"]] == ["FILLED"]
    wait_for(lambda: flat(stack, "alice"), 10)
    assert not flat(stack, "bob")  # bob was halted, not closed

    r = stack.client.post("/halt", json={"mode": "reduce_only"})
    assert r.status_code == 200 and r.json()["kill_switch"]["global"] == "REDUCE_ONLY"
    assert time.monotonic() - started < 20
    # An explicit close of the halted follower downgrades it to reduce-only and closes.
    r = stack.client.post("/close/bob")
    assert [c["status"] for c in r.json()["closed"]] == ["FILLED"]
    wait_for(lambda: flat(stack, "bob"), 10)
    # Under a global halt nothing is sent at all, closing included.
    assert stack.client.post("/halt", json={"mode": "halt"}).status_code == 200
    assert stack.client.post("/close/alice").json()["closed"][0]["status"] == "REFUSED"


def test_halt_mid_ladder_cancels_the_working_entry(make_stack: Any) -> None:
    stack = make_stack([FollowerSpec("alice", "DU0000001")])
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**{**BODY, "follower_id": "alice"})
    ex = r.json()["executions"][0]["execution_id"]
    rec = stack.wait_state(ex, {"WORKING"})
    wait_for(lambda: stack.execution(ex).get("submitted"), 10)
    assert stack.client.post("/halt", json={"follower_id": "alice"}).status_code == 200
    final = stack.wait_final(ex)
    assert final["state"] == "FAILED" and final["filled_qty"] == 0
    assert stack.wait_alert("KILL_SWITCH", "alice")
    orders = stack.sim.orders(order_ref=rec["order_ref"])
    assert len(orders) == 1 and orders[0].status == "Cancelled"
    assert stack.client.post("/close/nobody").status_code == 404
