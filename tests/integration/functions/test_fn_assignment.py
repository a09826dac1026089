"""tv_monitor's assignment detection (SPEC section 4 "Assignment") through
functions-framework, against the real sidecar on ibsim.

The positions are made the way they arise, not written into the simulator:

- a QQQ stock position from ibsim's real 0DTE expiry: a bull put spread whose
  short put is in the money at 16:00 is assigned (+100 shares per contract at
  the strike) while its out-of-the-money long put expires worthless;
- a long leg without its short: the spread is opened by the sidecar's ladder,
  then the short leg disappears because someone bought it back on the same
  account from another API client (as an early assignment or a manual
  intervention in TWS would leave it).

No sidecar route flattens stock or closes an unpaired long (``/liquidate`` and
``/close`` act on paired spreads only), so the positions are closed here by
that other client, "a person", and the monitor's ASSIGNMENT_RESOLVED is
checked on what it then sees.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, time
from typing import Any

import pytest
import sidecar_stack_fixtures
from fn_harness import FunctionEnv, FunctionServer, Topic
from sidecar_harness import TOKEN, TRADE_DAY, LoopThread, trading_start, wait_for
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


@pytest.fixture
def alert_topic(topics: Callable[[str], Topic]) -> Topic:
    return topics("alerts")


class Person:
    """Another API client on the follower's gateway: what a person in TWS would do.

    Uses the real ib_async on its own event loop thread, with a client id no
    sidecar session uses.
    """

    def __init__(self, port: int, client_id: int = 97) -> None:
        import ib_async

        self.lib = ib_async
        self.lt = LoopThread("person")
        self.ib = ib_async.IB()
        self.lt.run(self.ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10))

    def market_order(self, contract: Any, action: str, qty: float) -> str:
        """Place a market order for ``contract``; return its final status."""

        async def place() -> str:
            await self.ib.qualifyContractsAsync(contract)
            trade = self.ib.placeOrder(contract, self.lib.MarketOrder(action, qty, account=ACCOUNT))
            for _ in range(500):
                if trade.isDone():
                    break
                await asyncio.sleep(0.02)
            return str(trade.orderStatus.status)

        return self.lt.run(place())

    def option(self, strike: float, right: str = "P") -> Any:
        return self.lib.Option("QQQ", EXPIRY, strike, right, "SMART", currency="USD")

    def stock(self) -> Any:
        return self.lib.Stock("QQQ", "SMART", "USD")

    def close(self) -> None:
        self.lt.call(self.ib.disconnect)
        self.lt.stop()


@pytest.fixture
def person_for() -> Iterator[Callable[[int], Person]]:
    people: list[Person] = []

    def make(port: int) -> Person:
        people.append(Person(port))
        return people[-1]

    yield make
    for p in people:
        p.close()


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
    person_for: Callable[[int], Person],
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
        # Detected once: a later run does not raise it again.
        assert fn.post({"force": True}).json()["assignments"] == []

        detected = [a for a in alerts_of(alert_topic) if a["type"] == "ASSIGNMENT_DETECTED"]
        assert len(detected) == 1
        alert = detected[0]
        assert alert["severity"] == "CRITICAL" and alert["follower_id"] == fid
        assert alert["params"]["kind"] == "STOCK_POSITION"
        assert alert["params"]["sec_type"] == "STK" and alert["params"]["qty"] == 100

        # No sidecar route flattens stock: a person sells it; the monitor sees it go.
        person = person_for(stack.port_of(fid))
        assert person.market_order(person.stock(), "SELL", 100) == "Filled"
        resolved = wait_for(lambda: (r := fn.post({"force": True}).json())["resolved"] and r, 30)
        assert resolved["resolved"] == [ident]
        types = [a["type"] for a in alerts_of(alert_topic)]
        assert types.count("ASSIGNMENT_RESOLVED") == 1 and "ASSIGNMENT_DETECTED" not in types
        assert redis_client.hgetall(f"assign:{fid}") == {}
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")


def test_long_leg_without_its_short_is_an_assignment(
    make_stack: Callable[..., Any],
    function_env: FunctionEnv,
    redis_client: Any,
    alert_topic: Topic,
    person_for: Callable[[int], Person],
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
        person = person_for(stack.port_of(fid))
        assert person.market_order(person.option(480), "BUY", 1) == "Filled"
        found = wait_for(lambda: (r := fn.post().json())["assignments"] and r, 30)
        (ident,) = found["assignments"]
        assert ident.startswith(f"{fid}:SHORT_LEG_MISSING:")
        # A leg alone is no spread: nothing to grade, nothing liquidated.
        assert found["statuses"] == {} and found["liquidated"] == []
        assert json.loads(redis_client.hget(f"assign:{fid}", ident.split(":", 1)[1]))["kind"] == (
            "SHORT_LEG_MISSING"
        )
        assert fn.post().json()["assignments"] == []  # once, not every minute

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
        assert "LEGGED_POSITION" not in [a["type"] for a in published]

        # No sidecar route closes an unpaired long: a person sells it.
        assert person.market_order(person.option(475), "SELL", 1) == "Filled"
        resolved = wait_for(lambda: (r := fn.post().json())["resolved"] and r, 30)
        assert resolved["resolved"] == [ident]
        assert [a["type"] for a in alerts_of(alert_topic)].count("ASSIGNMENT_RESOLVED") == 1
        assert not any(stack.sim.positions(ACCOUNT).values())
    finally:
        redis_client.delete(f"tv:{fid}", f"assign:{fid}")
