"""Every injected fault, and IB's error behaviour, as a real client sees it."""

from __future__ import annotations

import asyncio
import json
from types import ModuleType
from typing import Any

import ib_async
import pytest
from ibsim_testkit import (
    LIBRARIES,
    LibraryLog,
    connect,
    credit_spread,
    option,
    run,
    running_sim,
    wait_until,
)

from ibsim.control import send_command


def _errors(ib: Any) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, *_: seen.append((req_id, code))
    return seen


def test_drop_connections_disconnects_the_client(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            gone = asyncio.Event()
            ib.disconnectedEvent += gone.set
            assert sim.control.drop_connections() == 1
            await asyncio.wait_for(gone.wait(), 5)
            assert not ib.isConnected()
            again = await connect(ib_async, sim.port)  # the gateway itself is still up
            assert again.isConnected()
            again.disconnect()

    run(body())


def test_refused_connections_then_recovery(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            sim.control.refuse_connections(1.0)
            with pytest.raises(ConnectionRefusedError):
                await connect(ib_async, sim.port)
            await asyncio.sleep(1.2)
            ib = await connect(ib_async, sim.port)
            assert ib.isConnected()
            ib.disconnect()

    run(body())


def test_rejected_order_gets_201(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            errors = _errors(ib)
            put = option(ib_async, 480, "P")
            await ib.qualifyContractsAsync(put)
            sim.control.reject_next_orders(1)
            rejected = ib.placeOrder(put, ib_async.LimitOrder("BUY", 1, 0.05))
            assert await wait_until(lambda: rejected.orderStatus.status == "Cancelled")
            assert (rejected.order.orderId, 201) in errors
            assert rejected.log[-1].errorCode == 201
            accepted = ib.placeOrder(put, ib_async.LimitOrder("BUY", 1, 0.05))
            assert await wait_until(lambda: accepted.orderStatus.status == "Submitted")
            ib.disconnect()

    run(body())


def test_insufficient_margin_gets_201(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim(equity=2_000.0) as sim:
            ib = await connect(ib_async, sim.port)
            errors = _errors(ib)
            short_put, long_put = option(ib_async, 480, "P"), option(ib_async, 470, "P")
            await ib.qualifyContractsAsync(short_put, long_put)
            bag = credit_spread(ib_async, long_put, short_put)
            order = ib_async.LimitOrder("BUY", 5, -1.00)
            state = await ib.whatIfOrderAsync(bag, order)
            assert float(state.initMarginChange) > 2_000
            trade = ib.placeOrder(bag, order)
            assert await wait_until(lambda: trade.orderStatus.status == "Cancelled")
            assert (order.orderId, 201) in errors
            assert "EQUITY WITH LOAN" in trade.log[-1].message
            assert ib.positions() == []
            ib.disconnect()

    run(body())


def test_delayed_acknowledgements(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            put = option(ib_async, 480, "P")
            await ib.qualifyContractsAsync(put)
            sim.control.delay_acks(0.6)
            trade = ib.placeOrder(put, ib_async.LimitOrder("BUY", 1, 0.05))
            await asyncio.sleep(0.4)
            assert trade.orderStatus.status == "PendingSubmit"
            assert await wait_until(lambda: trade.orderStatus.status == "Submitted")
            sim.control.delay_acks(0)
            ib.disconnect()

    run(body())


def test_paused_fills_keep_the_order_working(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            put = option(ib_async, 480, "P")
            await ib.qualifyContractsAsync(put)
            [ticker] = await ib.reqTickersAsync(put)
            sim.control.pause_fills()
            trade = ib.placeOrder(put, ib_async.LimitOrder("BUY", 1, round(ticker.ask + 0.5, 2)))
            assert await wait_until(lambda: trade.orderStatus.status == "Submitted")
            await asyncio.sleep(1.0)  # 20 simulated seconds at a marketable price
            assert trade.orderStatus.status == "Submitted"
            assert trade.fills == []
            sim.control.resume_fills()
            assert await wait_until(lambda: trade.orderStatus.status == "Filled")
            ib.disconnect()

    run(body())


def test_price_jump_is_visible_in_ticks(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            stock = ib_async.Stock("QQQ", "SMART", "USD")
            put = option(ib_async, 480, "P")
            await ib.qualifyContractsAsync(stock, put)
            stock_t = ib.reqMktData(stock)
            put_t = ib.reqMktData(put)
            assert await wait_until(lambda: put_t.modelGreeks is not None and stock_t.last > 0)
            assert abs(stock_t.last - 480) < 3
            sim.control.set_spot(470.0)
            assert await wait_until(lambda: abs(stock_t.last - 470) < 0.5)
            assert await wait_until(
                lambda: (
                    put_t.modelGreeks is not None and abs(put_t.modelGreeks.undPrice - 470) < 0.5
                )
            )
            assert put_t.bid > 9.0  # the 480 put is now ~$10 in the money
            sim.control.shift_spot(+5.0)
            assert await wait_until(lambda: abs(stock_t.last - 475) < 0.5)
            ib.disconnect()

    run(body())


@pytest.mark.parametrize("lib_name", sorted(LIBRARIES))
def test_connectivity_notices(lib_name: str, library_logs: LibraryLog) -> None:
    lib: ModuleType = LIBRARIES[lib_name]

    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(lib, sim.port)
            errors = _errors(ib)
            sim.control.notify(1100)
            assert await wait_until(lambda: (-1, 1100) in errors)
            assert sim.connectivity_lost
            sim.control.notify(1102)
            assert await wait_until(lambda: (-1, 1102) in errors)
            sim.control.notify(1101)
            assert await wait_until(lambda: (-1, 1101) in errors)
            assert not sim.connectivity_lost
            assert ib.isConnected()
            ib.disconnect()

    run(body())


def test_duplicate_client_id_gets_326_and_is_closed(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            first = await connect(ib_async, sim.port, client_id=5)
            second = ib_async.IB()
            errors = _errors(second)
            with pytest.raises((ConnectionError, TimeoutError)):
                await second.connectAsync("127.0.0.1", sim.port, clientId=5, timeout=2)
            assert (-1, 326) in errors
            assert first.isConnected()
            first.disconnect()

    run(body())


def test_pacing_violation_gets_100(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            errors = _errors(ib)
            ib.client.MaxRequests = 0  # defeat the client's own throttle
            for _ in range(80):
                ib.client.reqCurrentTime()
            assert await wait_until(lambda: (-1, 100) in errors)
            await asyncio.sleep(1.1)
            assert await ib.reqCurrentTimeAsync()  # served again once the rate drops
            ib.disconnect()

    run(body())


def test_duplicate_order_id_gets_103_and_unknown_messages_are_ignored(
    library_logs: LibraryLog,
) -> None:
    async def body() -> None:
        async with running_sim() as sim:
            ib = await connect(ib_async, sim.port)
            errors = _errors(ib)
            put = option(ib_async, 480, "P")
            await ib.qualifyContractsAsync(put)
            done = ib.placeOrder(put, ib_async.MarketOrder("BUY", 1))
            assert await wait_until(done.isDone)
            ib.client.placeOrder(done.order.orderId, put, ib_async.LimitOrder("BUY", 1, 0.05))
            assert await wait_until(lambda: (done.order.orderId, 103) in errors)
            ib.client.send(240, 1, "whatever")  # an id no gateway knows
            assert await ib.reqCurrentTimeAsync()
            assert ib.isConnected()
            ib.disconnect()

    run(body())


def test_control_port_line_protocol(library_logs: LibraryLog) -> None:
    async def body() -> None:
        async with running_sim(control_port=0) as sim:
            assert sim.control_port
            reply = await send_command("127.0.0.1", sim.control_port, "spot 455.5")
            assert reply["ok"] is True
            assert reply["spot"] == pytest.approx(455.5, abs=0.05)
            reply = await send_command("127.0.0.1", sim.control_port, "reject 2")
            assert reply["reject_next"] == 2
            reply = await send_command("127.0.0.1", sim.control_port, "bogus")
            assert reply["ok"] is False
            status = await send_command("127.0.0.1", sim.control_port, "status")
            assert json.dumps(status)
            assert status["gateways"][0]["port"] == sim.port

    run(body())
