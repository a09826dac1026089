"""The raw-client baseline: the same broker work as the sidecar, straight from ib_async.

Run by the benchmarks as its own process (``bench/_stack.py: Baseline``):
it connects first (one ib_async client per gateway, as the sidecar keeps one
session per follower), prints ``{"ready": true}``, then executes one JSON
command per stdin line and answers with one JSON line:

* ``fanout`` mode, ``{"cmd": "go", "ref": ..., "qty": ..., "long": K, "short": K}``:
  for every gateway at once, the steps SPEC section 3 asks of each follower
  before its order exists (qualify both legs, quote them, a what-if of the
  combo), then place ONE combo order (BUY long, SELL short) at minus the mid
  credit; answers ``{"t0": wall time the command was taken}`` once every
  order is acknowledged;
* ``ladder`` mode: ``{"cmd": "open", ...}`` places one combo order, then each
  ``{"cmd": "modify"}`` moves its limit one tick in place (same order id) and
  answers ``{"t0": ..., "limit": ..., "order_id": ...}`` once ib_async has the
  acknowledgement (the orderStatus that follows its "Modify" log entry).

Timing of the acknowledgements is taken at ibsim by the caller, the same way
as for the sidecar.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import ib_async

EXPIRY = "20250115"
ACKED = ("Submitted", "PreSubmitted", "Filled")


def option(strike: float) -> ib_async.Option:
    return ib_async.Option("QQQ", EXPIRY, strike, "P", "SMART", currency="USD")


async def poll(done: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait (bounded) until ``done()``; half-millisecond polls, like the ack recorder."""
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.0005)


async def wait_acked(trade: ib_async.Trade) -> None:
    await poll(lambda: trade.orderStatus.status in ACKED)


async def open_spread(
    ib: ib_async.IB, account: str, ref: str, qty: int, long_k: float, short_k: float
) -> ib_async.Trade:
    """Qualify, quote, what-if, place: one follower's entry, done directly."""
    long_c, short_c = option(long_k), option(short_k)
    await ib.qualifyContractsAsync(long_c, short_c)
    tickers = await ib.reqTickersAsync(long_c, short_c)
    by_id = {t.contract.conId: t for t in tickers if t.contract is not None}
    long_t, short_t = by_id[long_c.conId], by_id[short_c.conId]
    mid = ((short_t.bid + short_t.ask) - (long_t.bid + long_t.ask)) / 2
    bag = ib_async.Bag(
        symbol="QQQ",
        exchange="SMART",
        currency="USD",
        comboLegs=[
            ib_async.ComboLeg(conId=long_c.conId, ratio=1, action="BUY", exchange="SMART"),
            ib_async.ComboLeg(conId=short_c.conId, ratio=1, action="SELL", exchange="SMART"),
        ],
    )
    order = ib_async.LimitOrder(
        "BUY", qty, -round(mid, 2), account=account, orderRef=ref, tif="DAY"
    )
    await ib.whatIfOrderAsync(bag, order)
    trade = ib.placeOrder(bag, order)
    await wait_acked(trade)
    return trade


async def main(mode: str, setup: dict[str, Any]) -> None:
    ports: list[int] = setup["ports"]
    accounts: list[str] = setup["accounts"]
    clients = [ib_async.IB() for _ in ports]
    await asyncio.gather(
        *(
            ib.connectAsync("127.0.0.1", p, clientId=90, timeout=20)
            for ib, p in zip(clients, ports, strict=True)
        )
    )
    reply({"ready": True})
    loop = asyncio.get_running_loop()
    trade: ib_async.Trade | None = None
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "quit":
            reply({"bye": True})
            break
        if command["cmd"] == "go":
            t0 = time.time()
            await asyncio.gather(
                *(
                    open_spread(
                        ib,
                        account,
                        f"{command['ref']}-{n}",
                        command["qty"],
                        command["long"],
                        command["short"],
                    )
                    for n, (ib, account) in enumerate(zip(clients, accounts, strict=True))
                )
            )
            reply({"t0": t0})
        elif command["cmd"] == "open":
            trade = await open_spread(
                clients[0],
                accounts[0],
                command["ref"],
                command["qty"],
                command["long"],
                command["short"],
            )
            reply({"order_id": trade.order.orderId, "limit": trade.order.lmtPrice})
        elif command["cmd"] == "modify":
            assert trade is not None
            limit = round(float(trade.order.lmtPrice) + 0.01, 2)  # one tick less credit
            t0 = time.time()
            trade.order.lmtPrice = limit
            clients[0].placeOrder(trade.contract, trade.order)  # logs "Modify" at once
            before = len(trade.log)
            await poll(lambda t=trade, n=before: len(t.log) > n)
            reply(
                {
                    "t0": t0,
                    "t_client_ack": time.time(),
                    "limit": limit,
                    "order_id": trade.order.orderId,
                }
            )
    for ib in clients:
        ib.disconnect()


def reply(body: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
