"""dispatch_signal and tv_monitor through functions-framework against the real
sidecar on ibsim (the sidecar test-suite's stack), MongoDB and Redis."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fn_harness import FunctionEnv, FunctionServer, Topic
from sidecar_harness import TOKEN, TRADE_DAY, free_port, wait_for
from sidecar_stack_fixtures import FollowerSpec
from spreadpilot.domain.followers import FollowerState
from spreadpilot.domain.signals import manual_signal
from spreadpilot.storage.followers import FollowersRepository

BODY = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def function_for(
    function_env: FunctionEnv, stack: Any, target: str, **extra: str
) -> FunctionServer:
    return function_env.start(
        target,
        SIDECAR_URL=stack.sidecar.url,
        SIDECAR_TOKEN=TOKEN,
        **stack.clock.to_env(),
        **extra,
    )


def executions_for(mongo_db: Any, signal_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in mongo_db["executions"].find({"signal_id": signal_id}):
        counts[doc["follower_id"]] = counts.get(doc["follower_id"], 0) + 1
    return counts


def test_dispatch_three_deliveries_one_execution_per_eligible_follower(
    make_stack: Callable[..., Any], function_env: FunctionEnv, mongo_db: Any, redis_client: Any
) -> None:
    alice, bob, carol, dave = uid("alice"), uid("bob"), uid("carol"), uid("dave")
    stack = make_stack(
        [
            FollowerSpec(alice, "DU0000001"),
            FollowerSpec(bob, "DU0000002"),
            FollowerSpec(carol, "DU0000003"),
            FollowerSpec(dave, "DU0000004"),
        ]
    )
    repo = FollowersRepository(mongo_db)
    repo.set_enabled(carol, False)
    repo.set_state(dave, FollowerState.HALTED)
    signal = manual_signal({**BODY, "signal_id": uid("sig")}, today=TRADE_DAY)
    fn = function_for(function_env, stack, "dispatch_signal")

    data = signal.to_json().encode()
    for delivery in range(3):
        reply = fn.cloud_event(data, {"signal_id": signal.signal_id}, message_id=f"m-{delivery}")
        assert reply.status_code == 200, fn.logs()

    assert executions_for(mongo_db, signal.signal_id) == {alice: 1, bob: 1}
    for doc in mongo_db["executions"].find({"signal_id": signal.signal_id}):
        record = stack.wait_final(str(doc["_id"]), timeout=60)
        assert len(stack.orders(record["order_ref"])) == 1
    redis_client.delete(*[f"dispatch:{signal.signal_id}:{f}" for f in (alice, bob)])


def test_dispatch_transient_failure_is_retried_and_bad_messages_are_dropped(
    make_stack: Callable[..., Any], function_env: FunctionEnv, mongo_db: Any, redis_client: Any
) -> None:
    good, far = uid("good"), uid("far")
    stack = make_stack([FollowerSpec(good, "DU0000001"), FollowerSpec(far, "DU0000002")])
    # ``far`` is served by another sidecar that is down right now.
    FollowersRepository(mongo_db).update(far, {"sidecar_url": f"http://127.0.0.1:{free_port()}"})
    fn = function_for(function_env, stack, "dispatch_signal")
    signal = manual_signal({**BODY, "signal_id": uid("sig")}, today=TRADE_DAY)

    reply = fn.cloud_event(signal.to_json().encode(), {"signal_id": signal.signal_id})
    assert reply.status_code == 500  # Pub/Sub redelivers
    assert executions_for(mongo_db, signal.signal_id) == {good: 1}

    # Not a signal, oversized, or a debit spread: acknowledged, nothing traded.
    debit = json.loads(signal.to_json()) | {"strike_long": 485.0, "signal_id": uid("bad")}
    for data in (b"{not json", b"x" * 100_000, json.dumps(debit).encode()):
        assert fn.cloud_event(data).status_code == 200
    assert mongo_db["executions"].count_documents({"signal_id": debit["signal_id"]}) == 0
    redis_client.delete(f"dispatch:{signal.signal_id}:{good}")


def tv_statuses(redis_client: Any, fid: str) -> dict[str, str]:
    raw = redis_client.hgetall(f"tv:{fid}")
    return {k.decode(): json.loads(v)["status"] for k, v in raw.items()}


def alert_types(topic: Topic) -> list[str]:
    return [json.loads(m.data)["type"] for m in topic.pull()]


def stream_types(redis_client: Any, follower_id: str) -> list[str]:
    """Types of ``follower_id``'s alerts on the Redis stream ``alerts``, in publish order."""
    out = []
    for _id, fields in redis_client.xrange("alerts"):
        alert = json.loads(fields[b"alert"])
        if alert.get("follower_id") == follower_id:
            out.append(alert["type"])
    return out


@pytest.fixture
def alert_topic(topics: Callable[[str], Topic]) -> Topic:
    return topics("alerts")


def test_tv_monitor_records_safe_and_risk_and_liquidates_critical(
    make_stack: Callable[..., Any],
    function_env: FunctionEnv,
    redis_client: Any,
    alert_topic: Topic,
) -> None:
    fid = uid("tv")
    stack = make_stack([FollowerSpec(fid, "DU0000001")])
    opened = stack.post_signal(**BODY, follower_id=fid)
    assert opened.status_code == 202, opened.text
    execution_id = opened.json()["executions"][0]["execution_id"]
    assert stack.wait_final(execution_id, timeout=60)["state"] == "FILLED"
    fn = function_for(function_env, stack, "tv_monitor")
    spread_id = "P-20250115-475-480"

    try:
        # At the money: plenty of time value left (quotes may take a tick to arrive).
        report = wait_for(lambda: (r := fn.post().json())["statuses"] and r, 30, what="a TV status")
        assert report["statuses"] == {f"{fid}:{spread_id}": "SAFE"}, fn.logs()
        assert report["liquidated"] == []

        # Short put 480 a few points in the money: time value shrinks to RISK.
        stack.sim.control(lambda c: c.set_spot(477.0))
        risk = wait_for(
            lambda: (r := fn.post().json())["statuses"].get(f"{fid}:{spread_id}") == "RISK" and r,
            30,
            what="RISK status",
        )
        assert risk["liquidated"] == [] and risk["changes"]
        assert tv_statuses(redis_client, fid) == {spread_id: "RISK"}

        # A price jump leaves the short put deep in the money: CRITICAL, liquidated.
        stack.sim.control(lambda c: c.set_spot(455.0))
        critical = wait_for(
            lambda: (r := fn.post().json())["liquidated"] and r, 30, what="liquidation"
        )
        assert critical["statuses"][f"{fid}:{spread_id}"] == "CRITICAL"
        assert critical["liquidated"] == [f"{fid}:{spread_id}"]
        # One combo order closed both legs: no position left.
        assert wait_for(lambda: not any(stack.sim.positions("DU0000001").values()), 15)

        types = alert_types(alert_topic)
        assert "TV_SAFE" in types and "TV_RISK" in types and "TV_CRITICAL" in types
        assert types.count("TV_LIQUIDATED") == 1
        # Pub/Sub does not keep publish order (the fake hands messages back in any
        # order); the Redis stream does: CRITICAL was raised before the liquidation.
        ordered = stream_types(redis_client, fid)
        assert ordered.index("TV_CRITICAL") < ordered.index("TV_LIQUIDATED"), ordered
        liquidations = [o for o in stack.sim.orders(prefix="liq-")]
        assert len(liquidations) == 1
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")


def test_tv_monitor_liquidates_followers_side_by_side(
    make_stack: Callable[..., Any], function_env: FunctionEnv, redis_client: Any
) -> None:
    """Two followers CRITICAL in the same check: the second one's liquidation
    does not wait for the first one's fill (SPEC 1: isolation). Fills are
    paused, so each liquidation waits its whole fill wait; checked one after
    the other, the second order would reach ibsim a full wait after the first."""
    first, second = uid("tva"), uid("tvb")
    fill_wait = 4.0
    stack = make_stack(
        [FollowerSpec(first, "DU0000001"), FollowerSpec(second, "DU0000002")],
        settings={"sidecar_liquidation_fill_wait_seconds": fill_wait},
    )
    for fid in (first, second):
        opened = stack.post_signal(**BODY, follower_id=fid)
        execution_id = opened.json()["executions"][0]["execution_id"]
        assert stack.wait_final(execution_id, timeout=60)["state"] == "FILLED"
    fn = function_for(function_env, stack, "tv_monitor")
    try:
        stack.sim.control(lambda c: c.pause_fills())
        stack.sim.control(lambda c: c.set_spot(455.0))
        replies: list[dict[str, Any]] = []
        worker = threading.Thread(
            target=lambda: replies.append(
                wait_for(
                    lambda: (r := fn.post().json())["liquidation_failed"] and r,
                    60,
                    what="a liquidation attempt",
                )
            )
        )
        worker.start()
        orders = wait_for(
            lambda: (o := stack.sim.orders(prefix="liq-")) and len(o) >= 2 and o,
            60,
            what="both liquidation orders",
        )
        worker.join(60)
        report = replies[0]
        assert set(report["liquidation_failed"]) == {
            f"{first}:P-20250115-475-480",
            f"{second}:P-20250115-475-480",
        }, report
        assert {o.account for o in orders[:2]} == {"DU0000001", "DU0000002"}
        apart = abs((orders[0].created - orders[1].created).total_seconds())
        speed = stack.clock.speed()
        assert apart < fill_wait * speed / 2, f"{apart:.1f} simulated s apart at {speed}x"

        # Once fills resume, the resting market orders close both spreads.
        stack.sim.control(lambda c: c.resume_fills())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            any(stack.sim.positions(a).values()) for a in ("DU0000001", "DU0000002")
        ):
            fn.post()
            time.sleep(0.2)
        assert not any(stack.sim.positions("DU0000001").values())
        assert not any(stack.sim.positions("DU0000002").values())
    finally:
        stack.sim.control(lambda c: c.resume_fills())
        redis_client.delete(*[f"{k}:{f}" for f in (first, second) for k in ("tv", "assign")])


def test_pnl_mtm_marks_open_spread_from_sidecar(
    make_stack: Callable[..., Any], function_env: FunctionEnv, pg_dsn: str
) -> None:
    from decimal import Decimal

    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.fills import FillsRepository
    from spreadpilot.storage.pnl import PnlRepository

    fid = uid("mtm")
    stack = make_stack([FollowerSpec(fid, "DU0000001")])
    opened = stack.post_signal(**BODY, follower_id=fid)
    record = stack.wait_final(opened.json()["executions"][0]["execution_id"], 60)
    assert record["state"] == "FILLED"
    pg = Postgres(pg_dsn)
    fills = FillsRepository(pg)
    legs = wait_for(
        lambda: [r for r in fills.list_by_order_ref(record["order_ref"]) if r.commission],
        30,
        what="fills with commissions",
    )
    assert len(legs) == 2 and {x.follower_id for x in legs} == {fid}
    assert {x.trading_date for x in legs} == {TRADE_DAY}, legs
    fn = function_for(function_env, stack, "pnl_mtm")
    report = fn.post({"marks": 2, "spacing_seconds": 30}).json()
    assert report["marks_taken"] == 2 and report["snapshots"] == 2, (report, fn.logs())

    snaps = PnlRepository(pg).intraday_for_day(fid, TRADE_DAY)
    assert len(snaps) == 2
    assert (snaps[1].snapshot_time - snaps[0].snapshot_time).total_seconds() == 30
    commissions = sum((x.commission or Decimal(0) for x in legs), Decimal(0))
    for snap in snaps:
        assert snap.realized == -commissions  # nothing closed yet: only costs
        assert snap.total == snap.realized + snap.unrealized
        assert snap.position_count == 2
    pg.close()
