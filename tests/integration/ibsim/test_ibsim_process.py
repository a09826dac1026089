"""ibsim as a process (the CLI) with several accounts and a shared simulated clock.

One process serves two accounts on two ports against one market; the clock is
taken from SIM_START/SIM_SPEED/SIM_ANCHOR so another process given the same
values agrees on the time; `ibsim ctl` drives the control port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ib_async
import pytest
from ibsim_testkit import (
    START,
    capture_library_logs,
    connect,
    option,
    run,
    wait_until,
)
from spreadpilot.clock import ScaledClock

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ibsim_process() -> Iterator[dict[str, Any]]:
    clock = ScaledClock(START, 30.0, anchor=time.time())
    env = {**os.environ, **clock.to_env()}
    ports = [_free_port(), _free_port()]
    control = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "ibsim",
        "--port",
        str(ports[0]),
        "--account",
        "DU1111111",
        "--listen",
        f"{ports[1]}=DU2222222",
        "--seed",
        "5",
        "--control-port",
        str(control),
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("IBSIM_READY "), line
        ready = json.loads(line.split(" ", 1)[1])
        yield {"ready": ready, "clock": clock, "control": control, "env": env}
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_accounts_one_market_shared_clock(ibsim_process: dict[str, Any]) -> None:
    ready = ibsim_process["ready"]
    ports = ready["ports"]
    assert set(ports) == {"DU1111111", "DU2222222"}
    assert ready["clock"]["SIM_START"] == ibsim_process["env"]["SIM_START"]
    clock: ScaledClock = ibsim_process["clock"]

    async def body() -> None:
        first = await connect(ib_async, ports["DU1111111"])
        second = await connect(ib_async, ports["DU2222222"])
        assert first.managedAccounts() == ["DU1111111"]
        assert second.managedAccounts() == ["DU2222222"]
        sim_now: datetime = await first.reqCurrentTimeAsync()
        assert abs((sim_now - clock.now()).total_seconds()) < 30  # 1 wall second = 30 sim
        put_a, put_b = option(ib_async, 480, "P"), option(ib_async, 480, "P")
        await first.qualifyContractsAsync(put_a)
        await second.qualifyContractsAsync(put_b)
        assert put_a.conId == put_b.conId
        trade = first.placeOrder(put_a, ib_async.MarketOrder("BUY", 1))
        assert await wait_until(trade.isDone)
        assert await wait_until(lambda: len(first.positions()) == 1)
        assert second.positions() == []  # accounts are isolated
        [ta] = await first.reqTickersAsync(put_a)
        [tb] = await second.reqTickersAsync(put_b)
        assert abs(ta.modelGreeks.undPrice - tb.modelGreeks.undPrice) < 1.0  # one market
        first.disconnect()
        second.disconnect()

    with capture_library_logs() as logs:
        run(body())
    assert logs.problems() == []

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ibsim",
            "ctl",
            "--control-port",
            str(ibsim_process["control"]),
            "spot",
            "471",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    reply = json.loads(out.stdout)
    assert reply["ok"] is True
    assert reply["spot"] == pytest.approx(471, abs=0.1)
