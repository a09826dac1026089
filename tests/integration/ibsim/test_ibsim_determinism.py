"""Same seed, same requests => same quotes and same fills (timestamps, sizes, prices).

The simulator runs on a ManualClock and is stepped by the test, second by
second, while a real ib_async client places a resting combo order between mid
and natural; its fills (including partial fills) must repeat exactly.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import ib_async
from ibsim_testkit import (
    ACCOUNT,
    START,
    capture_library_logs,
    connect,
    credit_spread,
    option,
    run,
    running_sim,
    wait_until,
)
from spreadpilot.clock import ManualClock

from ibsim.orders import Leg, combo_quote

SECONDS = 900


async def _session(seed: int) -> tuple[list[tuple[float, float]], list[tuple[Any, ...]]]:
    clock = ManualClock(START)
    async with running_sim(clock=clock, auto_step=False, seed=seed) as sim:
        ib = await connect(ib_async, sim.port)
        short_put, long_put = option(ib_async, 480, "P"), option(ib_async, 475, "P")
        await ib.qualifyContractsAsync(short_put, long_put)
        bag = credit_spread(ib_async, long_put, short_put)
        legs = [
            Leg(sim.chain.resolve(long_put.conId), 1, 1),  # type: ignore[arg-type]
            Leg(sim.chain.resolve(short_put.conId), 1, -1),  # type: ignore[arg-type]
        ]
        cq = combo_quote(sim.market, legs)
        limit = math.ceil(cq.mid * 100) / 100  # between mid and natural: fills by chance
        assert limit < cq.ask
        trade = ib.placeOrder(bag, ib_async.LimitOrder("BUY", 6, limit))
        assert await wait_until(lambda: trade.orderStatus.status == "Submitted")
        short_inst = legs[1].instrument
        quotes = []
        for _ in range(SECONDS):
            clock.advance(1.0)
            sim.step()
            q = sim.market.quote(short_inst)
            quotes.append((q.bid, q.ask))
            await asyncio.sleep(0)
        assert await wait_until(lambda: len(trade.fills) == len(sim.broker.executions[ACCOUNT]))
        fills = [
            (
                f.execution.time,
                f.contract.conId,
                f.execution.side,
                f.execution.shares,
                f.execution.price,
            )
            for f in trade.fills
        ]
        ib.disconnect()
        return quotes, fills


def test_same_seed_same_quotes_and_fills() -> None:
    with capture_library_logs() as logs:
        first = run(_session(seed=11))
        second = run(_session(seed=11))
        other = run(_session(seed=12))
    assert logs.problems() == []
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert first[1], "the resting order should have (partly) filled in 15 simulated minutes"
    assert other[0] != first[0]
