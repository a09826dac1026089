"""SIGKILL the sidecar in the middle of a ladder, restart it, twice.

The first kill lands while every follower's order is working (fills paused):
the new process must adopt each order by its ``orderRef`` and keep walking
the ladder on it. The second kill lands just as the market comes to the
limits, so the fills happen while no sidecar runs: the next process must
find them in IB's executions, write them to PostgreSQL and settle the records.
"""

from __future__ import annotations

import uuid

from chaos_harness import FINAL_STATES, ChaosFactory, ChaosStack, wait_for

BODY = {"strategy": "bull_put", "qty_per_leg": 2, "strike_long": 475, "strike_short": 480}


def _rung(record: dict[str, object]) -> int:
    return int(record.get("rung") or 0)  # type: ignore[call-overload]


def test_sigkill_mid_ladder_then_fills_while_down(chaos_stack: ChaosFactory) -> None:
    stack: ChaosStack = chaos_stack(3)
    stack.sim.control(lambda c: c.pause_fills())
    ids = stack.post_signal(**BODY, signal_id=f"kill-{uuid.uuid4().hex[:8]}")
    assert len(ids) == 3
    before = stack.wait_executions(
        ids, lambda r: r["state"] == "WORKING" and bool(r.get("submitted")) and _rung(r) >= 1
    )
    stack.kill_sidecar()
    orders_at_kill = {r["order_ref"]: r["order_id"] for r in before}

    stack.start_sidecar()
    # The restarted process keeps laddering the same orders...
    rung_at_kill = {r["execution_id"]: _rung(r) for r in before}
    stack.wait_executions(
        ids,
        lambda r: r["state"] == "WORKING" and _rung(r) > rung_at_kill[r["execution_id"]],
        what="ladder to continue after the restart",
    )
    for ref, order_id in orders_at_kill.items():
        orders = stack.sim.orders(order_ref=ref)
        assert [o.order_id for o in orders] == [order_id], ref

    # ...then the market comes to the limits and the process dies again.
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    stack.kill_sidecar()
    for ref in orders_at_kill:
        wait_for(lambda ref=ref: stack.sim.orders(order_ref=ref)[0].status == "Filled", 20)
    stack.start_sidecar()

    final = stack.wait_executions(ids, lambda r: r["state"] in FINAL_STATES, timeout=60)
    assert {r["state"] for r in final} == {"FILLED"}, [(r["_id"], r["state"]) for r in final]
    assert all(r["filled_qty"] == 2 for r in final)
    seen = stack.assert_properties()
    print(seen)
    # 3 entry orders, 2 legs each filled; EXECUTION_FILLED (and session alerts) fanned out.
    assert seen["orders"] == 3 and seen["executions"] >= 6
    assert seen["alerts"] >= 3 and seen["telegram"] >= 3
