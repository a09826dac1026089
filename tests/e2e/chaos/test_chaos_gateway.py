"""One follower's gateway drops every connection and refuses new ones for 30
simulated seconds, in the middle of a ladder, while its order fills.

The other followers must not notice (isolation), and the cut-off follower's
session must come back by itself, find the fill in IB's executions (it
happened while nobody was connected), write it to PostgreSQL and settle the
record, without a second order.
"""

from __future__ import annotations

import uuid

from chaos_harness import FINAL_STATES, SPEED, ChaosFactory, ChaosStack

BODY = {"strategy": "bull_put", "qty_per_leg": 3, "strike_long": 475, "strike_short": 480}
OUTAGE_SIMULATED_SECONDS = 30.0


def test_gateway_dropped_and_refused_for_30_simulated_seconds(chaos_stack: ChaosFactory) -> None:
    stack: ChaosStack = chaos_stack(3)
    stack.sim.control(lambda c: c.pause_fills())
    ids = stack.post_signal(**BODY, signal_id=f"gw-{uuid.uuid4().hex[:8]}")
    working = stack.wait_executions(
        ids, lambda r: r["state"] == "WORKING" and int(r.get("rung") or 0) >= 1
    )
    port = stack.sim.ports[stack.accounts["f1"]]
    outage_wall = OUTAGE_SIMULATED_SECONDS / SPEED
    stack.sim.control(lambda c: c.refuse_connections(outage_wall, port))
    assert stack.sim.control(lambda c: c.drop_connections(port)) >= 1
    # The market comes to the limits during the outage: f1's order fills unseen.
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())

    final = stack.wait_executions(ids, lambda r: r["state"] in FINAL_STATES, timeout=60)
    assert {r["follower_id"]: r["state"] for r in final} == {
        "f1": "FILLED",
        "f2": "FILLED",
        "f3": "FILLED",
    }
    for before in working:
        assert [o.order_id for o in stack.sim.orders(order_ref=before["order_ref"])] == [
            before["order_id"]
        ]
    seen = stack.assert_properties()
    assert seen["orders"] == 3 and seen["executions"] >= 6
    unreachable = [
        a
        for a in stack.produced_alerts().values()
        if a["type"] == "GATEWAY_UNREACHABLE" and a.get("follower_id") == "f1"
    ]
    assert unreachable, "the outage was reported"
    assert not [
        a
        for a in stack.produced_alerts().values()
        if a["type"] == "GATEWAY_UNREACHABLE" and a.get("follower_id") != "f1"
    ], "other followers' sessions were not disturbed"
