"""Redis, then MongoDB, then PostgreSQL go down during a trading day and come back.

Each outage lands while something is happening that needs that store:

* Redis down while orders fill: the sidecar's alerts wait in its Redis sink's
  buffer, and the fan-out (which de-duplicates through Redis) refuses the
  Pub/Sub deliveries until Redis is back, so Pub/Sub redelivers them;
* MongoDB down while an order fills (the execution record cannot be written)
  and while a new signal arrives on Pub/Sub (dispatch cannot read followers,
  the sidecar cannot create records): the fill is settled and the signal
  traded once MongoDB is back, each exactly once;
* PostgreSQL down while the kill switch closes every spread: the fills wait in
  the sidecar's fill buffer and land when PostgreSQL is back.
"""

from __future__ import annotations

import time
import uuid

from chaos_harness import FINAL_STATES, TRADE_DAY, ChaosFactory, ChaosStack, wait_for
from spreadpilot.domain.signals import manual_signal

OUTAGE_WALL_SECONDS = 3.0  # a simulated minute at the test's speed


def _sid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _executions_of(stack: ChaosStack, signal_id: str, count: int) -> list[str]:
    def found() -> list[str] | None:
        docs = stack.executions_in_mongo(signal_id)
        return [str(d["_id"]) for d in docs] if len(docs) >= count else None

    return wait_for(found, 60, interval=0.2, what=f"executions of {signal_id}")


def _sink(stack: ChaosStack, name: str) -> dict[str, object]:
    return next(s for s in stack.status()["alert_sinks"] if s["name"] == name)


def test_redis_then_mongodb_then_postgresql_down_and_back(chaos_stack: ChaosFactory) -> None:
    stack = chaos_stack(3)
    sim = stack.sim

    # -- Redis: alerts raised while it is down are buffered, then delivered.
    sim.control(lambda c: c.pause_fills())
    first = stack.post_signal(
        strategy="bull_put", qty_per_leg=2, strike_long=475, strike_short=480, signal_id=_sid("a")
    )
    stack.wait_executions(first, lambda r: r["state"] == "WORKING" and bool(r.get("submitted")))
    stack.proxies["redis"].cut()
    sim.control(lambda c: c.shift_spot(-1.0))
    sim.control(lambda c: c.resume_fills())
    stack.wait_executions(first, lambda r: r["state"] == "FILLED", timeout=30)
    wait_for(lambda: _sink(stack, "redis")["buffered"], 10, what="alerts buffered for Redis")
    time.sleep(OUTAGE_WALL_SECONDS)
    stack.proxies["redis"].restore()

    # -- MongoDB: a fill while records cannot be written, and a signal arriving meanwhile.
    sim.control(lambda c: c.pause_fills())
    second = manual_signal(
        {
            "strategy": "bull_put",
            "qty_per_leg": 1,
            "strike_long": 476,
            "strike_short": 481,
            "signal_id": _sid("b"),
        },
        today=TRADE_DAY,
    )
    stack.publish_signal(second)
    second_ids = _executions_of(stack, second.signal_id, 3)
    stack.wait_executions(
        second_ids, lambda r: r["state"] == "WORKING" and bool(r.get("submitted"))
    )
    stack.proxies["mongo"].cut()
    sim.control(lambda c: c.shift_spot(-1.0))
    sim.control(lambda c: c.resume_fills())
    third = manual_signal(
        {
            "strategy": "bull_put",
            "qty_per_leg": 1,
            "strike_long": 474,
            "strike_short": 479,
            "signal_id": _sid("c"),
        },
        today=TRADE_DAY,
    )
    stack.publish_signal(third)
    time.sleep(OUTAGE_WALL_SECONDS)
    assert stack.client.post("/trade/signal", json={**dict(_body(third))}).status_code == 503
    stack.proxies["mongo"].restore()
    # The orders filled at IB during the outage (whether their records settle is
    # the separate, currently failing test below).
    for execution_id in second_ids:
        wait_for(
            lambda ref=execution_id: [o.status for o in sim.orders(order_ref=ref)] == ["Filled"],
            30,
            what=f"{execution_id} filled at ibsim",
        )
    third_ids = _executions_of(stack, third.signal_id, 3)
    stack.wait_executions(third_ids, lambda r: r["state"] in FINAL_STATES, timeout=60)

    # -- PostgreSQL: the kill switch closes everything; the fills wait for the database.
    stack.proxies["postgres"].cut()
    closed = stack.client.post("/close/all", json={"reason": "chaos"})
    assert closed.status_code == 200, closed.text
    wait_for(lambda: stack.status()["fills"]["pending"], 20, what="fills buffered for PostgreSQL")
    time.sleep(OUTAGE_WALL_SECONDS)
    stack.proxies["postgres"].restore()

    seen = stack.assert_properties()
    # One record per (signal, follower): the redelivered and the direct signal added none.
    assert len(stack.executions_in_mongo()) == 9
    assert seen["executions"] >= 12
    # Every spread closed: nothing left on either side.
    for account in stack.accounts.values():
        assert not any(sim.positions(account).values())


def _body(signal: object) -> dict[str, object]:
    import json

    body = json.loads(signal.to_json())  # type: ignore[attr-defined]
    return {
        "strategy": body["strategy"],
        "qty_per_leg": body["qty_per_leg"],
        "strike_long": body["strike_long"],
        "strike_short": body["strike_short"],
        "signal_id": body["signal_id"] + "-direct",
    }


def test_execution_paused_by_a_mongodb_outage_settles_when_it_is_back(
    chaos_stack: ChaosFactory,
) -> None:
    stack = chaos_stack(1)
    stack.sim.control(lambda c: c.pause_fills())
    ids = stack.post_signal(
        strategy="bull_put", qty_per_leg=1, strike_long=475, strike_short=480, signal_id=_sid("p")
    )
    stack.wait_executions(ids, lambda r: r["state"] == "WORKING" and bool(r.get("submitted")))
    stack.proxies["mongo"].cut()
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    time.sleep(OUTAGE_WALL_SECONDS)
    stack.proxies["mongo"].restore()
    final = stack.wait_executions(ids, lambda r: r["state"] in FINAL_STATES, timeout=20)
    assert [r["state"] for r in final] == ["FILLED"]
