"""Throughput of ibsim with 10 connected ib_async clients (loopback, bounded run).

ibsim runs as a separate process (its own core, as in the demo) serving ten
accounts on ten ports, one gateway per follower; ten ib_async clients connect
from this process. Two phases, each a few wall seconds:

- streaming: every client streams quotes and greeks for 30 options while the
  simulated clock runs fast, so every quote changes at every server tick;
- orders: every client places market orders on a 0DTE put back to back (each
  waits for its fill), alternating BUY and SELL so positions stay flat.

Prints one JSON object (the shape of bench/_report.py): sustained server
messages/s in and out (from the server's own counters), client-side
messages/s, filled orders/s and the place-to-filled latency percentiles.
Client and server pacing limits are disabled to measure the simulator rather than the throttles.

    .venv/bin/python bench/ibsim_throughput.py [--clients 10] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ib_async

from ibsim.control import send_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(clients: int) -> tuple[subprocess.Popen[str], dict[str, int], int]:
    """Start ibsim (blocking: before the event loop) and wait for its ready line."""
    ports = {f"DU{9000001 + i}": free_port() for i in range(clients)}
    control = free_port()
    accounts = list(ports.items())
    cmd = [
        sys.executable,
        "-m",
        "ibsim",
        "--port",
        str(accounts[0][1]),
        "--account",
        accounts[0][0],
        *[arg for acct, port in accounts[1:] for arg in ("--listen", f"{port}={acct}")],
        "--start",
        "2025-01-15 10:00",
        "--speed",
        "300",
        "--seed",
        "1",
        "--equity",
        "10000000",
        "--control-port",
        str(control),
        "--no-pacing",
        "--log-level",
        "WARNING",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("IBSIM_READY"):
        proc.kill()
        raise RuntimeError(f"ibsim did not start: {line!r}")
    return proc, ports, control


async def server_counts(control: int) -> tuple[int, int]:
    status = await send_command("127.0.0.1", control, "status")
    gateways = status["gateways"]
    return sum(g["messages_in"] for g in gateways), sum(g["messages_out"] for g in gateways)


async def measure(control: int, ibs: list[Any], seconds: float, work: Any) -> dict[str, float]:
    in0, out0 = await server_counts(control)
    recv0 = sum(ib.client._numMsgRecv for ib in ibs)
    started = time.perf_counter()
    extra = await work(started + seconds)
    elapsed = time.perf_counter() - started
    in1, out1 = await server_counts(control)
    recv1 = sum(ib.client._numMsgRecv for ib in ibs)
    result = {
        "seconds": round(elapsed, 2),
        "server_messages_in_per_s": round((in1 - in0) / elapsed, 1),
        "server_messages_out_per_s": round((out1 - out0) / elapsed, 1),
        "client_messages_received_per_s": round((recv1 - recv0) / elapsed, 1),
    }
    result.update(extra)
    return result


async def run_clients(ports: dict[str, int], control: int, seconds: float) -> dict[str, Any]:
    clients = len(ports)
    ibs: list[Any] = []
    try:
        for i, port in enumerate(ports.values()):
            ib = ib_async.IB()
            ib.client.MaxRequests = 0
            await ib.connectAsync("127.0.0.1", port, clientId=i + 1, timeout=10)
            ibs.append(ib)
        strikes = range(465, 495)
        options = [ib_async.Option("QQQ", "20250115", k, "P", "SMART") for k in strikes]
        await ibs[0].qualifyContractsAsync(*options)

        async def stream(deadline: float) -> dict[str, float]:
            tickers = [ib.reqMktData(c) for ib in ibs for c in options]
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
            for ib in ibs:
                for c in options:
                    ib.cancelMktData(c)
            return {"streams": len(tickers)}

        streaming = await measure(control, ibs, seconds, stream)

        put = options[15]
        latencies: list[float] = []

        async def trader(ib: Any, deadline: float) -> int:
            done = 0
            side = "BUY"
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                trade = ib.placeOrder(put, ib_async.MarketOrder(side, 1))
                while not trade.isDone():
                    await asyncio.sleep(0)
                    if time.perf_counter() > deadline + 5:
                        return done
                latencies.append(time.perf_counter() - t0)
                done += 1
                side = "SELL" if side == "BUY" else "BUY"
            return done

        async def orders(deadline: float) -> dict[str, float]:
            counts = await asyncio.gather(*(trader(ib, deadline) for ib in ibs))
            total = sum(counts)
            return {"orders_filled": total}

        trading = await measure(control, ibs, seconds, orders)
        trading["orders_per_s"] = round(trading["orders_filled"] / trading["seconds"], 1)
        lat = sorted(latencies)
        trading["fill_latency_ms_p50"] = round(statistics.median(lat) * 1000, 2)
        trading["fill_latency_ms_p95"] = round(lat[int(len(lat) * 0.95) - 1] * 1000, 2)
        return {
            "clients": clients,
            "gateways": len(ports),
            "transport": "loopback TCP, ibsim in a separate process",
            "streaming": streaming,
            "orders": trading,
        }
    finally:
        for ib in ibs:
            ib.disconnect()


def main(clients: int, seconds: float) -> dict[str, Any]:
    proc, ports, control = start_sim(clients)
    try:
        return asyncio.run(run_clients(ports, control, seconds))
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(5)


def report(result: dict[str, Any]) -> None:
    """Print the result in the shape ``python -m bench`` collects (bench/_report.py)."""
    from _report import Figure, emit

    streaming, orders = result["streaming"], result["orders"]
    emit(
        "ibsim_throughput",
        "ibsim throughput (10 gateways, 10 ib_async clients)",
        "Paper gateway capacity: quotes and greeks streamed to 300 subscriptions, then "
        "market orders placed back to back by every client, each waiting for its fill. "
        "Context for the other figures; no target.",
        [
            Figure("server messages out (streaming)", streaming["server_messages_out_per_s"], "/s"),
            Figure(
                "client messages received (streaming)",
                streaming["client_messages_received_per_s"],
                "/s",
            ),
            Figure("filled orders", orders["orders_per_s"], "/s"),
            Figure("place-to-fill p50", orders["fill_latency_ms_p50"], "ms"),
            Figure("place-to-fill p95", orders["fill_latency_ms_p95"], "ms"),
        ],
        result,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    report(main(args.clients, args.seconds))
