"""Concurrent ``IBBroker.positions()`` calls on one connection, against ibsim.

ib_async keeps one pending request per key ("positions"): before the
single-flight fix a second request orphaned the first, which then timed out
("reqPositions: no answer in 10.0s") or returned only part of the book (one leg
of a spread). tv_monitor and pnl_mtm both ask at :00 of every minute, so
overlapping calls are the normal case in production.
"""

from __future__ import annotations

import asyncio

import pytest
from ibsim_testkit import ACCOUNT, EXPIRY, run, running_sim, wait_until
from spreadpilot.adapters.ib_broker import GatewayUnavailable, IBBroker


async def _broker(port: int, client_id: int = 5, request_timeout: float = 5.0) -> IBBroker:
    broker = IBBroker("127.0.0.1", port, client_id, ACCOUNT, request_timeout=request_timeout)
    await broker.connect()
    return broker


async def _open_spread(broker: IBBroker, qty: int = 2) -> tuple[int, int]:
    """Fill one bull put credit spread (marketable) and return (long, short) conIds."""
    long_leg = await broker.qualify_option("QQQ", EXPIRY, 475, "P")
    short_leg = await broker.qualify_option("QQQ", EXPIRY, 480, "P")
    bag = broker.bag([(long_leg, "BUY"), (short_leg, "SELL")])
    long_q, short_q = await broker.quote(long_leg, short_leg)
    natural = long_q.ask - short_q.bid  # combo price: BUY minus SELL, a credit is negative
    order = broker.limit_order(broker.next_order_id(), qty, natural + 0.05, "sp-test")
    trade = broker.place(bag, order)
    assert await wait_until(trade.isDone, within=10)
    assert trade.orderStatus.status == "Filled"
    return long_leg.con_id, short_leg.con_id


def test_concurrent_positions_share_one_request_and_see_both_legs() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                long_id, short_id = await _open_spread(broker)
                results = await asyncio.gather(*(broker.positions() for _ in range(10)))
                for positions in results:
                    by_con = {p.con_id: p.quantity for p in positions}
                    assert by_con == {long_id: 2.0, short_id: -2.0}
                # Callers get their own lists: one mutating its answer cannot
                # change what the others see.
                assert len({id(r) for r in results}) == 10
                # Nothing is cached: the next round is a fresh request that works too.
                again = await asyncio.gather(*(broker.positions() for _ in range(3)))
                assert all(len(r) == 2 for r in again)
            finally:
                broker.disconnect()

    run(body(), timeout=60)


def test_a_failed_positions_request_fails_every_waiter() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                # Hold the connection's request queue behind a slow placeOrder, so
                # the positions request is surely on the wire when the gateway drops.
                sim.control.delay_acks(2.0)
                leg = await broker.qualify_option("QQQ", EXPIRY, 470, "P")
                order = broker.limit_order(broker.next_order_id(), 1, 0.01, "sp-held")
                order.action = "SELL"
                broker.place(broker.bag([(leg, "BUY")]), order)
                waiters = [asyncio.ensure_future(broker.positions()) for _ in range(5)]
                await asyncio.sleep(0.3)
                assert not any(w.done() for w in waiters)
                sim.control.drop_connections()
                outcomes = await asyncio.gather(*waiters, return_exceptions=True)
                assert all(isinstance(o, GatewayUnavailable) for o in outcomes), outcomes
            finally:
                sim.control.delay_acks(0)
                broker.disconnect()

    run(body(), timeout=60)


def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    async def body() -> None:
        async with running_sim() as sim:
            broker = await _broker(sim.port)
            try:
                long_id, short_id = await _open_spread(broker, qty=1)
                first = asyncio.ensure_future(broker.positions())
                second = asyncio.ensure_future(broker.positions())
                await asyncio.sleep(0)
                first.cancel()
                positions = await second
                assert {p.con_id for p in positions} == {long_id, short_id}
                with pytest.raises(asyncio.CancelledError):
                    await first
            finally:
                broker.disconnect()

    run(body(), timeout=60)
