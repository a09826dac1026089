"""The simulator as one object: configuration, shared market, gateways, loop.

``IBSim`` is the Python API used by tests and the demo (in-process) and by the
CLI (as a process). One instance serves several accounts, each on its own port,
all trading against one market and one simulated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from spreadpilot.clock import NEW_YORK, Clock, RealClock, ScaledClock, clock_from_env

from .accounts import Account
from .contracts import Chain
from .control import Control, ControlServer
from .market import Market, Scenario
from .orders import (
    AccountChanged,
    Broker,
    CommissionEvent,
    Event,
    ExecReport,
    OrderError,
    OrderUpdate,
    WhatIfResult,
)
from .server import Gateway

log = logging.getLogger("ibsim")


@dataclass
class SimConfig:
    """How to run the simulator. Ports may be 0 (ephemeral; read ``IBSim.ports``)."""

    host: str = "127.0.0.1"
    listen: list[tuple[int, str]] = field(default_factory=lambda: [(4002, "DU0000001")])
    start: datetime | None = None
    speed: float = 1.0
    seed: int = 0
    scenario: Scenario | None = None
    scenario_file: str | None = None
    #: starting cash of every account not named in ``account_equity``
    equity: float = 100_000.0
    #: starting cash per account (``--listen PORT=ACCOUNT:EQUITY``), so one
    #: simulator can serve a small account next to large ones
    account_equity: dict[str, float] = field(default_factory=dict)
    control_port: int | None = None
    clock: Clock | None = None
    #: wall seconds between loop steps (fills, expiry, streaming ticks)
    tick_interval: float = 0.1
    #: simulated seconds a quote holds (1 = every second; 60 = one-minute bars)
    quote_step: int = 1
    #: error 100 above this many messages per second from one client (None: off)
    pacing_limit: int | None = 50
    #: wall seconds between periodic portfolio/account value pushes
    account_push_interval: float = 3.0
    #: run the loop; tests driving a ManualClock call ``step()`` themselves
    auto_step: bool = True

    def make_clock(self) -> Clock:
        """Explicit clock, else --start/--speed, else SIM_* environment, else real time."""
        if self.clock is not None:
            return self.clock
        if self.start is not None:
            start = self.start if self.start.tzinfo else self.start.replace(tzinfo=NEW_YORK)
            anchor = os.environ.get("SIM_ANCHOR")
            return ScaledClock(start, self.speed, float(anchor) if anchor else None)
        if os.environ.get("SIM_START"):
            return clock_from_env(dict(os.environ))
        if self.speed != 1.0:
            return ScaledClock(datetime.now(NEW_YORK), self.speed)
        return RealClock()


class IBSim:
    """A paper IB Gateway serving one or more accounts over the TWS API."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        accounts = [a for _, a in self.config.listen]
        if len(set(accounts)) != len(accounts):
            raise ValueError("each account must be served on exactly one port")
        unknown = set(self.config.account_equity) - set(accounts)
        if unknown:
            raise ValueError(f"equity given for accounts not served: {sorted(unknown)}")
        for account, cash in self.config.account_equity.items():
            if not (cash >= 0 and cash < float("inf")):
                raise ValueError(f"equity of {account} must be a finite amount >= 0, got {cash}")
        self.clock = self.config.make_clock()
        scenario = self.config.scenario
        if scenario is None and self.config.scenario_file:
            scenario = Scenario.load(self.config.scenario_file)
        self.scenario = scenario or Scenario()
        today = self.clock.now().astimezone(NEW_YORK).date()
        self.chain = Chain(reference_spot=self.scenario.spot, first_day=today)
        self.market = Market(
            self.clock, self.chain, self.config.seed, self.scenario, self.config.quote_step
        )
        self.accounts: dict[str, Account] = {
            a: Account(account_id=a, cash=self.config.account_equity.get(a, self.config.equity))
            for a in accounts
        }
        self.broker = Broker(self.market, self.chain, self.accounts, self.config.seed)
        self.gateways: list[Gateway] = [
            Gateway(self, self.config.host, port, account) for port, account in self.config.listen
        ]
        self.control = Control(self)
        self._control_server: ControlServer | None = None
        self.connectivity_lost = False
        self.ack_delay = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last_push = time.monotonic()
        #: called with every event as it is handed to the gateways (``observe``)
        self._observers: list[Callable[[Event], None]] = []

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> IBSim:
        for gateway in self.gateways:
            await gateway.start()
        if self.config.control_port is not None:
            self._control_server = ControlServer(
                self.control, self.config.host, self.config.control_port
            )
            await self._control_server.start()
        if self.config.auto_step:
            self._task = asyncio.get_running_loop().create_task(self._run())
        log.info(
            "ibsim up: %s, sim time %s, seed %d",
            ", ".join(f"{g.account}@{g.port}" for g in self.gateways),
            self.clock.now().astimezone(NEW_YORK).isoformat(timespec="seconds"),
            self.config.seed,
        )
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if self._control_server is not None:
            await self._control_server.stop()
            self._control_server = None
        for gateway in self.gateways:
            await gateway.stop()

    async def __aenter__(self) -> IBSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ports(self) -> dict[str, int]:
        """Account -> listening port."""
        return {g.account: g.port for g in self.gateways}

    @property
    def port(self) -> int:
        """The first gateway's port (the common single-account case)."""
        return self.gateways[0].port

    @property
    def control_port(self) -> int | None:
        return self._control_server.port if self._control_server else None

    def gateway(self, account: str | None = None) -> Gateway:
        if account is None:
            return self.gateways[0]
        for gateway in self.gateways:
            if gateway.account == account:
                return gateway
        raise KeyError(account)

    def clock_env(self) -> dict[str, str]:
        """SIM_* variables that let another process share this simulated clock."""
        if isinstance(self.clock, ScaledClock):
            return self.clock.to_env()
        return {}

    # -- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                self.step()
            except Exception:
                log.exception("simulation step failed")

    def step(self) -> None:
        """One pass: fills and expiries up to now, streaming ticks, periodic pushes."""
        self.route(self.broker.step(self.clock.now()))
        for gateway in self.gateways:
            gateway.update_tickers()
        now = time.monotonic()
        if now - self._last_push >= self.config.account_push_interval:
            self._last_push = now
            for gateway in self.gateways:
                gateway.push_account(positions=False)

    def observe(self, observer: Callable[[Event], None]) -> None:
        """Call ``observer`` with every event, in order, as it goes out to the clients.

        Why: a benchmark or a test that wants the moment ibsim acknowledged an
        order (or applied a new limit) gets it here, at the source, instead
        of polling the order book.
        """
        self._observers.append(observer)

    def route(self, events: Iterable[Event]) -> None:
        """Hand each event to the gateway of its account, keeping their order."""
        by_account: dict[str, list[Event]] = {}
        for event in events:
            for observer in self._observers:
                observer(event)
            by_account.setdefault(_account_of(event), []).append(event)
        for account, batch in by_account.items():
            for gateway in self.gateways:
                if gateway.account == account:
                    gateway.route(batch)


def _account_of(event: Event) -> str:
    if isinstance(event, OrderUpdate | ExecReport | CommissionEvent):
        return event.order.account
    if isinstance(event, OrderError | WhatIfResult | AccountChanged):
        return event.account
    raise TypeError(f"unknown event {event!r}")


def scenario_path(text: str | None) -> str | None:
    if not text:
        return None
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(text)
    return str(path)
