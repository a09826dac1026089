"""Helpers for the ibsim integration tests: run the simulator in-process and
connect the real client libraries to it, failing on any message they drop.

The client libraries decode positionally and log (rather than raise) when a
message does not fit, and log "timed out" when an expected end message never
comes. ``LibraryLog`` captures both libraries' log records so a test fails on
any of those, while server-sent IB errors (``Error 202, reqId ...``) that a test
provokes on purpose are allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from types import ModuleType
from typing import Any, TypeVar

import ib_async
import ib_insync
from spreadpilot.clock import NEW_YORK

from ibsim import IBSim, Scenario, SimConfig

LIBRARIES: dict[str, ModuleType] = {"ib_async": ib_async, "ib_insync": ib_insync}
TRADE_DAY = date(2025, 1, 15)
START = datetime(2025, 1, 15, 10, 0, tzinfo=NEW_YORK)
EXPIRY = TRADE_DAY.strftime("%Y%m%d")
ACCOUNT = "DU0000001"

T = TypeVar("T")

#: Log messages that mean a message was dropped, a request hung or routing failed.
_BAD = re.compile(
    r"Error handling fields|Error for |timed out|Unknown reqId|No order found|"
    r"Socket connection broken|Traceback|exception",
    re.IGNORECASE,
)


class LibraryLog(logging.Handler):
    """Collects WARNING+ records of both client libraries."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self, allow: tuple[str, ...] = ()) -> list[str]:
        out = []
        for record in self.records:
            text = record.getMessage()
            if record.exc_info:
                text += " [exception]"
            decoder = record.name.endswith("Decoder")
            if (decoder or _BAD.search(text)) and not any(a in text for a in allow):
                out.append(f"{record.name}: {text}")
        return out

    def errors_with_code(self, code: int) -> list[str]:
        return [r.getMessage() for r in self.records if f" {code}, reqId" in r.getMessage()]


@contextlib.contextmanager
def capture_library_logs() -> Any:
    handler = LibraryLog()
    loggers = [logging.getLogger(name) for name in ("ib_async", "ib_insync")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run one test body in a fresh event loop, bounded in wall time."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def make_config(**overrides: Any) -> SimConfig:
    defaults: dict[str, Any] = {
        "listen": [(0, ACCOUNT)],
        "start": START,
        "speed": 20.0,
        "seed": 7,
        "scenario": Scenario(spot=480.0),
        "tick_interval": 0.05,
        "account_push_interval": 1.0,
    }
    defaults.update(overrides)
    return SimConfig(**defaults)


@contextlib.asynccontextmanager
async def running_sim(**overrides: Any) -> AsyncIterator[IBSim]:
    sim = IBSim(make_config(**overrides))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def connect(lib: ModuleType, port: int, client_id: int = 1, within: float = 5) -> Any:
    ib = lib.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=within)
    return ib


async def wait_until(
    predicate: Callable[[], bool], within: float = 5.0, interval: float = 0.02
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def option(lib: ModuleType, strike: float, right: str, expiry: str = EXPIRY) -> Any:
    return lib.Option("QQQ", expiry, strike, right, "SMART", currency="USD")


def credit_spread(lib: ModuleType, long_leg: Any, short_leg: Any) -> Any:
    """The combo SpreadPilot sends: BUY the long leg, SELL the short leg, per unit."""
    return lib.Contract(
        symbol="QQQ",
        secType="BAG",
        exchange="SMART",
        currency="USD",
        comboLegs=[
            lib.ComboLeg(conId=long_leg.conId, ratio=1, action="BUY", exchange="SMART"),
            lib.ComboLeg(conId=short_leg.conId, ratio=1, action="SELL", exchange="SMART"),
        ],
    )
