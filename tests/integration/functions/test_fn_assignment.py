"""tv_monitor's assignment handling (SPEC section 4 "Assignment") through
functions-framework, against the real sidecar on ibsim.

The positions are made the way they arise, not written into the simulator:

- a QQQ stock position from ibsim's real 0DTE expiry: a bull put spread whose
  short put is in the money at 16:00 is assigned (+100 shares per contract at
  the strike) while its out-of-the-money long put expires worthless;
- a long leg without its short: the spread is opened by the sidecar's ladder,
  then the short leg disappears because someone bought it back on the same
  account from another API client (as an early assignment or a manual
  intervention in TWS would leave it).

The system resolves both itself: the run that raises ASSIGNMENT_DETECTED calls
the sidecar's ``POST /flatten``, which closes that one position with one market
order, and ASSIGNMENT_RESOLVED follows from that fill. ibsim's own book is
checked flat afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, time
from typing import Any

import pytest
import sidecar_stack_fixtures
from fn_harness import FunctionEnv, FunctionServer, Topic
from sidecar_harness import TOKEN, TRADE_DAY, Person, trading_start, wait_for
from sidecar_stack_fixtures import FollowerSpec
from spreadpilot.clock import NEW_YORK, ScaledClock

BODY = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}
ACCOUNT = "DU0000001"
EXPIRY = TRADE_DAY.strftime("%Y%m%d")
CLOSE = datetime.combine(TRADE_DAY, time(16, 0), tzinfo=NEW_YORK)
QQQ_STOCK_CON_ID = 320227571  # ibsim's QQQ STK (ibsim/README.md)


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def tv_monitor_for(function_env: FunctionEnv, stack: Any) -> FunctionServer:
    return function_env.start(
        "tv_monitor", SIDECAR_URL=stack.sidecar.url, SIDECAR_TOKEN=TOKEN, **stack.clock.to_env()
    )


def alerts_of(topic: Topic) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in topic.pull()]


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


def open_spread(stack: Any, fid: str, **body: Any) -> None:
    opened = stack.post_signal(**{**BODY, **body}, follower_id=fid)
    assert opened.status_code == 202, opened.text
    execution_id = opened.json()["executions"][0]["execution_id"]
    assert stack.wait_final(execution_id, timeout=60)["state"] == "FILLED"


def test_stock_from_assignment_at_expiry_is_detected_once_then_resolved(
    make_stack: Callable[..., Any],
    function_env: FunctionEnv,
    redis_client: Any,
    alert_topic: Topic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The session starts ten simulated minutes before the close (30x: ~20 s of
    # wall time), so the real expiry is reached inside the test.
    monkeypatch.setattr(
        sidecar_stack_fixtures,
        "make_clock",
        lambda speed: ScaledClock(trading_start(time(15, 50)), speed),
    )
    fid = uid("assigned")
    stack = make_stack([FollowerSpec(fid, ACCOUNT)], speed=30.0)
    # Ten minutes before the close an at-the-money spread's credit is below
    # MIN_PRICE, so the short put is sold in the money (QQQ at 480): 477/482
    # brings about 2.00. At 16:00 the 482 put is in the money, the 477 is not.
    # Nothing runs tv_monitor before the close, so the spread is still open then.
    open_spread(stack, fid, strike_long=477, strike_short=482)
    fn = tv_monitor_for(function_env, stack)
    try:
        wait_for(lambda: stack.clock.now() > CLOSE, 60, what="the 16:00 close")
        stock = wait_for(
            lambda: stack.sim.positions(ACCOUNT).get(QQQ_STOCK_CON_ID), 15, what="assigned stock"
        )
        assert stock == 100  # one short put assigned: +100 shares at 482
        assert not [q for k, q in stack.sim.positions(ACCOUNT).items() if k != QQQ_STOCK_CON_ID]

        # After the close the scheduled runs do nothing (market closed); the first
        # run of the next session finds it. ``force`` stands in for that run.
        assert fn.post().json()["market_closed"] is True
        ident = f"{fid}:STOCK_POSITION:{QQQ_STOCK_CON_ID}"
        first = wait_for(lambda: (r := fn.post({"force": True}).json())["assignments"] and r, 30)
        assert first["assignments"] == [ident], fn.logs()
        assert first["statuses"] == {} and first["liquidated"] == []
        published = alerts_of(alert_topic)
        detected = [a for a in published if a["type"] == "ASSIGNMENT_DETECTED"]
        assert len(detected) == 1
        alert = detected[0]
        assert alert["severity"] == "CRITICAL" and alert["follower_id"] == fid
        assert alert["params"]["kind"] == "STOCK_POSITION"
        assert alert["params"]["sec_type"] == "STK" and alert["params"]["qty"] == 100

        # The same run resolved it: the sidecar sold the 100 shares (one market order).
        assert first["flattened"] == [ident] and first["resolved"] == [ident]
        assert first["flatten_failed"] == {}
        assert wait_for(lambda: not any(stack.sim.positions(ACCOUNT).values()), 15)
        [flat] = stack.sim.orders(prefix="flat-")
        assert (flat.ticket.action, flat.ticket.total_quantity, flat.status) == (
            "SELL",
            100,
            "Filled",
        )
        assert flat.ticket.order_ref.endswith(f"-{QQQ_STOCK_CON_ID}-{EXPIRY}")

        # Detected once and resolved once: a later run raises neither again and
        # forgets the position (it is gone at IB).
        later = fn.post({"force": True}).json()
        assert later["assignments"] == [] and later["resolved"] == []
        assert later["flattened"] == []
        assert redis_client.hgetall(f"assign:{fid}") == {}

        published += alerts_of(alert_topic)
        types = [a["type"] for a in published]
        assert types.count("ASSIGNMENT_DETECTED") == 1, types
        assert types.count("ASSIGNMENT_RESOLVED") == 1, types
        ordered = stream_types(redis_client, fid)  # Pub/Sub keeps no order; the stream does
        assert ordered.index("ASSIGNMENT_DETECTED") < ordered.index("ASSIGNMENT_RESOLVED")
        # The sidecar raised its own ASSIGNMENT_RESOLVED for the fill.
        resolved = stack.wait_alert("ASSIGNMENT_RESOLVED", fid)
        assert resolved["params"]["status"] == "FILLED" and resolved["params"]["qty"] == 100
        assert len(stack.sim.orders(prefix="flat-")) == 1
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")


def test_long_leg_without_its_short_is_an_assignment(
    make_stack: Callable[..., Any],
    function_env: FunctionEnv,
    redis_client: Any,
    alert_topic: Topic,
    person_for: Callable[[int, str], Person],
) -> None:
    fid = uid("orphan")
    stack = make_stack([FollowerSpec(fid, ACCOUNT)])
    open_spread(stack, fid)
    fn = tv_monitor_for(function_env, stack)
    spread_id = f"P-{EXPIRY}-475-480"
    try:
        report = wait_for(lambda: (r := fn.post().json())["statuses"] and r, 30, what="a status")
        assert report["statuses"] == {f"{fid}:{spread_id}": "SAFE"}
        assert report["assignments"] == []

        # The short 480 put goes away while the long 475 put is still held.
        person = person_for(stack.port_of(fid), ACCOUNT)
        assert person.market_order(person.option(480), "BUY", 1) == "Filled"
        found = wait_for(lambda: (r := fn.post().json())["assignments"] and r, 30)
        (ident,) = found["assignments"]
        assert ident.startswith(f"{fid}:SHORT_LEG_MISSING:")
        # A leg alone is no spread: nothing to grade, nothing liquidated...
        assert found["statuses"] == {} and found["liquidated"] == []
        # ...and the same run closed it: the sidecar sold the orphan 475 put.
        assert found["flattened"] == [ident] and found["resolved"] == [ident], fn.logs()
        assert wait_for(lambda: not any(stack.sim.positions(ACCOUNT).values()), 15)
        [flat] = stack.sim.orders(prefix="flat-")
        assert (flat.ticket.action, flat.ticket.total_quantity, flat.status) == (
            "SELL",
            1,
            "Filled",
        )
        assert json.loads(redis_client.hget(f"assign:{fid}", ident.split(":", 1)[1]))["kind"] == (
            "SHORT_LEG_MISSING"
        )
        later = fn.post().json()  # once, not every minute; and the hash forgets it
        assert later["assignments"] == [] and later["resolved"] == [] and later["flattened"] == []
        assert redis_client.hgetall(f"assign:{fid}") == {}

        published = alerts_of(alert_topic)
        detected = [a for a in published if a["type"] == "ASSIGNMENT_DETECTED"]
        assert len(detected) == 1
        params = detected[0]["params"]
        assert detected[0]["severity"] == "CRITICAL"
        assert (params["kind"], params["right"], params["strike"], params["qty"]) == (
            "SHORT_LEG_MISSING",
            "P",
            475.0,
            1,
        )
        types = [a["type"] for a in published]
        assert "LEGGED_POSITION" not in types
        assert types.count("ASSIGNMENT_RESOLVED") == 1
        ordered = stream_types(redis_client, fid)  # Pub/Sub keeps no order; the stream does
        assert ordered.index("ASSIGNMENT_DETECTED") < ordered.index("ASSIGNMENT_RESOLVED")
        assert len(stack.sim.orders(prefix="flat-")) == 1
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")


def test_a_refused_flatten_is_critical_and_retried_next_run(
    make_stack: Callable[..., Any],
    function_env: FunctionEnv,
    redis_client: Any,
    alert_topic: Topic,
    person_for: Callable[[int, str], Person],
) -> None:
    """Halted (no orders at all): the flatten is refused, a person is paged, nothing is
    sent; once resumed, the next run flattens and resolves it."""
    fid = uid("halted")
    stack = make_stack([FollowerSpec(fid, ACCOUNT)])
    open_spread(stack, fid)
    fn = tv_monitor_for(function_env, stack)
    try:
        person = person_for(stack.port_of(fid), ACCOUNT)
        assert person.market_order(person.option(480), "BUY", 1) == "Filled"
        halted = stack.client.post("/halt", json={"follower_id": fid, "mode": "halt"})
        assert halted.status_code == 200
        found = wait_for(lambda: (r := fn.post().json())["assignments"] and r, 30)
        (ident,) = found["assignments"]
        assert found["flattened"] == [] and found["resolved"] == []
        assert "409" in found["flatten_failed"][ident]
        assert stack.sim.orders(prefix="flat-") == []
        failed = [
            a
            for a in alerts_of(alert_topic)
            if a["type"] == "ASSIGNMENT_DETECTED" and "flatten_error" in a["params"]
        ]
        assert len(failed) == 1 and failed[0]["severity"] == "CRITICAL"

        assert stack.client.post("/resume", json={"follower_id": fid}).status_code == 200
        retried = fn.post().json()
        assert retried["assignments"] == []  # detected once
        assert retried["flattened"] == [ident] and retried["resolved"] == [ident]
        assert wait_for(lambda: not any(stack.sim.positions(ACCOUNT).values()), 15)
        assert len(stack.sim.orders(prefix="flat-")) == 1
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")
