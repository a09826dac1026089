"""Streamed updates that reach ``IBBroker`` while one of its requests is pending.

reqPositions is a subscription (ib_async sends the first one while it connects
and never cancels it): from then on the gateway streams a ``position`` message
for every contract a fill changes, and ib_async adds every ``position`` message
that arrives while a positions request is unanswered to that request's answer.
An update that lands between a new request and its positionEnd was therefore
counted again by the full list that follows: the same conId twice, and the
sidecar's ``GET /positions`` once showed 8 spreads for a follower who held 4.
ibsim's ``delay_positions`` fault holds the answer so that the fill's streamed
update surely arrives first (TCP keeps the order).

The same holds for reqOpenOrders: an openOrder that acknowledges a placement
while the request is pending is added to its answer, then the answer lists
the order again.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from ib_async import Trade
from ibsim_testkit import ACCOUNT, EXPIRY, run, running_sim, wait_until
from spreadpilot.adapters.ib_broker import BrokerPosition, IBBroker, OptionContract
from spreadpilot.domain.timevalue import group_spreads

from ibsim.control import send_command
from sidecar.executor import to_domain_positions

#: Wall seconds the answer to reqPositions is held: far longer than a fill takes.
HOLD = 3.0


async def _broker(port: int, client_id: int = 5) -> IBBroker:
    broker = IBBroker("127.0.0.1", port, client_id, ACCOUNT, request_timeout=HOLD + 7.0)
    await broker.connect()
    return broker


async def _put_spread(broker: IBBroker) -> tuple[OptionContract, OptionContract]:
    """The legs of a 475/480 bull put credit spread: (long, short)."""
    long_leg = await broker.qualify_option("QQQ", EXPIRY, 475, "P")
    short_leg = await broker.qualify_option("QQQ", EXPIRY, 480, "P")
    return long_leg, short_leg


async def _trade_spread(
    broker: IBBroker, legs: tuple[OptionContract, OptionContract], action: str, qty: int
) -> Trade:
    """Send a marketable combo order: BUY opens the credit spread, SELL closes it."""
    long_leg, short_leg = legs
    bag = broker.bag([(long_leg, "BUY"), (short_leg, "SELL")])
    long_q, short_q = await broker.quote(long_leg, short_leg)
    # Combo price: BUY leg minus SELL leg; a nickel through the natural price.
    natural = long_q.ask - short_q.bid if action == "BUY" else long_q.bid - short_q.ask
    limit = natural + 0.05 if action == "BUY" else natural - 0.05
    order = broker.limit_order(broker.next_order_id(), qty, limit, f"sp-{action.lower()}")
    order.action = action
    return broker.place(bag, order)


async def _fill_while_positions_pending(
    broker: IBBroker, legs: tuple[OptionContract, OptionContract], action: str, qty: int
) -> list[BrokerPosition]:
    """A positions request whose answer comes only after a fill's streamed update."""
    pending = asyncio.ensure_future(broker.positions())
    await asyncio.sleep(0)  # the request is registered and on the wire
    trade = await _trade_spread(broker, legs, action, qty)
    assert await wait_until(trade.isDone, within=HOLD - 1.0)
    assert trade.orderStatus.status == "Filled"
    # The fill (and the position update streamed after it) came before the answer.
    assert not pending.done()
    return await pending


def test_a_streamed_update_before_the_answer_is_not_counted_twice() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                # ib_async's connect already sent reqPositions, so updates stream.
                assert await broker.positions() == []
                legs = await _put_spread(broker)
                long_leg, short_leg = legs
                sim.control.delay_positions(HOLD)
                positions = await _fill_while_positions_pending(broker, legs, "BUY", 4)

                # What the sidecar's GET /positions makes of it: one 4-lot spread.
                spreads, orphans = group_spreads(to_domain_positions(positions))
                assert [s.qty for s in spreads] == [4]
                assert orphans == []
                assert Counter(p.con_id for p in positions) == {
                    long_leg.con_id: 1,
                    short_leg.con_id: 1,
                }
                assert {p.con_id: p.quantity for p in positions} == {
                    long_leg.con_id: 4.0,
                    short_leg.con_id: -4.0,
                }

                # Without the fault the next answer is the same book.
                sim.control.delay_positions(0)
                again = await broker.positions()
                assert sorted((p.con_id, p.quantity) for p in again) == sorted(
                    (p.con_id, p.quantity) for p in positions
                )
            finally:
                sim.control.delay_positions(0)
                broker.disconnect()

    run(body(), timeout=60)


def test_a_position_closed_while_the_request_is_pending_is_left_out() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                legs = await _put_spread(broker)
                opened = await _trade_spread(broker, legs, "BUY", 2)
                assert await wait_until(opened.isDone, within=10)
                assert len(await broker.positions()) == 2  # held, and subscribed
                sim.control.delay_positions(HOLD)
                # The close streams quantity 0 for both legs before the answer
                # (which no longer lists them).
                positions = await _fill_while_positions_pending(broker, legs, "SELL", 2)
                assert positions == []
            finally:
                sim.control.delay_positions(0)
                broker.disconnect()

    run(body(), timeout=60)


def test_an_order_acknowledged_while_open_orders_are_pending_is_listed_once() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                leg = await broker.qualify_option("QQQ", EXPIRY, 470, "P")
                # The placeOrder is held, and the open-orders request queues behind
                # it: its acknowledgement (an openOrder) arrives while the request
                # is pending, then the answer lists the order again.
                sim.control.delay_acks(1.0)
                order = broker.limit_order(broker.next_order_id(), 1, 0.01, "sp-resting")
                order.action = "SELL"
                trade = broker.place(broker.bag([(leg, "BUY")]), order)
                listed = await broker.refresh_open_orders()
                assert [t.order.orderId for t in listed] == [trade.order.orderId]
                assert listed[0] is trade
            finally:
                sim.control.delay_acks(0)
                broker.disconnect()

    run(body(), timeout=60)


def test_overlapping_open_orders_requests_share_one_answer() -> None:
    """The reconciler and an execution can both refresh open orders around a
    reconnect. ib_async keys the pending request by kind, so a second request
    sent before the first is answered took the first's future over and the
    first caller waited out its timeout; both now get the one answer."""

    async def body() -> None:
        async with running_sim() as sim:
            broker = IBBroker("127.0.0.1", sim.port, 5, ACCOUNT, request_timeout=3.0)
            await broker.connect()
            try:
                leg = await broker.qualify_option("QQQ", EXPIRY, 470, "P")
                order = broker.limit_order(broker.next_order_id(), 1, 0.01, "sp-resting")
                order.action = "SELL"
                trade = broker.place(broker.bag([(leg, "BUY")]), order)
                await wait_until(lambda: trade.orderStatus.status == "Submitted")
                first, second = await asyncio.gather(
                    broker.refresh_open_orders(), broker.refresh_open_orders()
                )
                assert [t.order.orderId for t in first] == [trade.order.orderId]
                assert [t.order.orderId for t in second] == [trade.order.orderId]
            finally:
                broker.disconnect()

    run(body(), timeout=60)


def test_positions_delay_through_the_control_port() -> None:
    async def body() -> None:
        async with running_sim(control_port=0) as sim:
            assert sim.control_port
            reply = await send_command("127.0.0.1", sim.control_port, f"delaypos 1.5 {sim.port}")
            assert reply["ok"] is True
            assert reply["gateways"][0]["positions_delay"] == 1.5
            reply = await send_command("127.0.0.1", sim.control_port, "delaypos")
            assert reply["ok"] is False
            reply = await send_command("127.0.0.1", sim.control_port, "delaypos 0")
            assert reply["gateways"][0]["positions_delay"] == 0.0

    run(body(), timeout=30)
