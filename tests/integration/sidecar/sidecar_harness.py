"""Test harness: ibsim and the sidecar on real sockets, each on its own event loop.

The paper gateway runs in a thread with its own loop (like a separate
process would), the sidecar runs under uvicorn in another thread or as a real
subprocess (for the SIGKILL test), and the test talks HTTP to it. Both share
one scaled clock, so a 5-second rung lasts a fraction of a wall second.
TCP proxies in front of MongoDB, Redis and PostgreSQL let a test take those
stores "down" under a running sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any, TypeVar

import httpx
import uvicorn
from spreadpilot.clock import NEW_YORK, ScaledClock
from spreadpilot.config import Settings
from spreadpilot.domain import calendar

from ibsim.market import Scenario
from ibsim.sim import IBSim, SimConfig

T = TypeVar("T")

TOKEN = "test-token-1234567890"
SPEED = 20.0


TRADE_DAY = date(2025, 1, 15)


def trading_start(at: dtime = dtime(10, 0)) -> datetime:
    """A fixed NYSE session (so quotes are the same every run) at ``at`` New York time."""
    assert calendar.is_trading_day(TRADE_DAY)
    return datetime.combine(TRADE_DAY, at, tzinfo=NEW_YORK)


def make_clock(speed: float = SPEED) -> ScaledClock:
    return ScaledClock(trading_start(), speed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop in a daemon thread, to run servers beside the test."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Sim:
    """ibsim serving ``accounts`` on ephemeral ports, in its own thread."""

    def __init__(
        self,
        accounts: list[str],
        clock: ScaledClock,
        *,
        seed: int = 7,
        equity: dict[str, float] | None = None,
    ) -> None:
        self.lt = LoopThread("ibsim")
        config = SimConfig(
            listen=[(0, a) for a in accounts],
            clock=clock,
            seed=seed,
            scenario=Scenario(spot=480.0, walk_vol=0.0, noise=False),
            pacing_limit=None,
            tick_interval=0.02,
        )

        async def start() -> IBSim:
            sim = IBSim(config)
            for acct, cash in (equity or {}).items():
                sim.accounts[acct].cash = cash
            return await sim.start()

        self.sim = self.lt.run(start())
        self.ports = dict(self.sim.ports)

    def control(self, fn: Callable[[Any], T]) -> T:
        return self.lt.call(lambda: fn(self.sim.control))

    def orders(self, order_ref: str | None = None, prefix: str | None = None) -> list[Any]:
        def pick() -> list[Any]:
            out = []
            for o in self.sim.broker.orders.values():
                ref = o.ticket.order_ref or ""
                if order_ref is not None and ref != order_ref:
                    continue
                if prefix is not None and not ref.startswith(prefix):
                    continue
                out.append(o)
            return out

        return self.lt.call(pick)

    def positions(self, account: str) -> dict[int, float]:
        def pick() -> dict[int, float]:
            acct = self.sim.accounts[account]
            return {p.instrument.con_id: p.quantity for p in acct.open_positions()}

        return self.lt.call(pick)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.lt.run(self.sim.stop())
        self.lt.stop()


class TcpProxy:
    """A byte pipe to ``target`` that can be cut (connections dropped, port closed)."""

    def __init__(self, lt: LoopThread, target_host: str, target_port: int) -> None:
        self.lt = lt
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.lt.run(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers -= {writer, up_w}

    def cut(self) -> None:
        """Close the listening port and every open connection: the store is 'down'."""

        async def cut() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._writers.clear()

        self.lt.run(cut())


@dataclass
class SidecarServer:
    """A sidecar under uvicorn in a thread; ``url`` and an authenticated client."""

    app: Any
    port: int
    lt: LoopThread = field(default_factory=lambda: LoopThread("sidecar"))
    server: uvicorn.Server | None = None

    def start(self) -> SidecarServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.lt.loop.call_soon_threadsafe(
            lambda: self.lt.loop.create_task(self.server.serve())  # type: ignore[union-attr]
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("sidecar did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not getattr(self.server, "_stopped", False):
                if not self.lt.loop.is_running():
                    break
                tasks = self.lt.call(lambda: len(asyncio.all_tasks(self.lt.loop)))
                if tasks <= 1:
                    break
                time.sleep(0.05)
        self.lt.stop()


class SidecarProcess:
    """``spreadpilot sidecar`` as a real process (so it can be SIGKILLed)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.port = port
        full = {**os.environ, **env, "SIDECAR_PORT": str(port)}
        exe = os.path.join(os.path.dirname(sys.executable), "spreadpilot")
        self.proc = subprocess.Popen(
            [exe, "sidecar", "--port", str(port)],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._log: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.append(line)

    @property
    def log(self) -> str:
        return b"".join(self._log).decode(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def wait_ready(self, followers: list[str], timeout: float = 30.0) -> None:
        wait_sessions_ready(self.client(), followers, timeout, proc=self)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_sessions_ready(
    client: httpx.Client, followers: list[str], timeout: float = 30.0, proc: Any = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            r = client.get("/health")
            if r.status_code == 200:
                last = r.json()
                sessions = last["sessions"]
                if all(sessions.get(f, {}).get("ready") for f in followers):
                    return dict(last)
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"sidecar exited:\n{proc.log[-4000:]}")
        time.sleep(0.1)
    extra = f"\n{proc.log[-4000:]}" if proc is not None else ""
    raise AssertionError(f"sessions not ready: {last}{extra}")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last={last!r}")


class Person:
    """Another API client on a follower's gateway: what a person in TWS would do.

    Uses the real ib_async on its own event-loop thread, with a client id no
    sidecar session uses, to make the positions a test needs the way they
    arise (an orphan leg after a manual buy-back, shares in the account).
    """

    def __init__(self, port: int, account: str, client_id: int = 97) -> None:
        import ib_async

        self.lib = ib_async
        self.account = account
        self.lt = LoopThread("person")
        self.ib = ib_async.IB()
        self.lt.run(self.ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10))

    def market_order(self, contract: Any, action: str, qty: float) -> str:
        """Place a market order for ``contract``; return its final status."""

        async def place() -> str:
            await self.ib.qualifyContractsAsync(contract)
            trade = self.ib.placeOrder(
                contract, self.lib.MarketOrder(action, qty, account=self.account)
            )
            for _ in range(500):
                if trade.isDone():
                    break
                await asyncio.sleep(0.02)
            return str(trade.orderStatus.status)

        return self.lt.run(place())

    def option(self, strike: float, right: str = "P", expiry: date = TRADE_DAY) -> Any:
        return self.lib.Option(
            "QQQ", expiry.strftime("%Y%m%d"), strike, right, "SMART", currency="USD"
        )

    def stock(self) -> Any:
        return self.lib.Stock("QQQ", "SMART", "USD")

    def close(self) -> None:
        self.lt.call(self.ib.disconnect)
        self.lt.stop()


def wall_seconds(clock_seconds: float, speed: float = SPEED) -> float:
    return clock_seconds / speed


_ = timedelta


@dataclass
class FollowerSpec:
    id: str
    account: str
    equity: float | None = None
    down: bool = False  # gateway port closed
    qty_multiplier: float = 1.0
    max_qty_per_leg: int = 50
    max_open_spreads: int = 5
    client_id: int = 11


@dataclass
class Stack:
    sim: Sim
    sidecar: SidecarServer
    clock: ScaledClock
    db: Any
    redis: Any
    alerts_key: str
    pg_dsn: str
    followers: dict[str, FollowerSpec]
    settings: Settings
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    http: httpx.Client | None = None
    pubsub: Any = None
    app_factory: Callable[[], Any] | None = None

    def restart_sidecar(self) -> None:
        """Stop the sidecar and start a new one on the same stores, gateways and clock.

        What a redeploy or a crash-and-restart looks like from outside: the new
        process knows only what the execution records and the gateways tell it.
        """
        assert self.app_factory is not None
        if self.http is not None:
            self.http.close()
            self.http = None
        self.sidecar.stop()
        self.sidecar = SidecarServer(self.app_factory(), free_port()).start()
        up = [f.id for f in self.followers.values() if not f.down]
        wait_sessions_ready(self.client, up, timeout=30)

    @property
    def client(self) -> httpx.Client:
        if self.http is None:
            self.http = self.sidecar.client()
        return self.http

    def port_of(self, follower_id: str) -> int:
        return self.sim.ports[self.followers[follower_id].account]

    def post_signal(self, **body: Any) -> httpx.Response:
        return self.client.post("/trade/signal", json=body)

    def execution(self, execution_id: str) -> dict[str, Any]:
        r = self.client.get(f"/executions/{execution_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_state(
        self, execution_id: str, states: set[str], timeout: float = 30.0
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            rec = self.execution(execution_id)
            return rec if rec["state"] in states else None

        return wait_for(check, timeout, what=f"{execution_id} in {states}")

    def wait_final(self, execution_id: str, timeout: float = 30.0) -> dict[str, Any]:
        final = {
            "FILLED",
            "LIMIT_REACHED",
            "MID_TOO_LOW",
            "NO_MARGIN",
            "REJECTED",
            "FAILED",
            "SKIPPED",
            "POSITION_LIMIT",
        }
        return self.wait_state(execution_id, final, timeout)

    def alerts(
        self, alert_type: str | None = None, follower_id: str | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for _id, fields in self.redis.xrange(self.alerts_key):
            alert = json.loads(fields["alert"])
            if alert_type and alert["type"] != alert_type:
                continue
            if follower_id and alert.get("follower_id") != follower_id:
                continue
            out.append(alert)
        return out

    def wait_alert(
        self, alert_type: str, follower_id: str | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        found = wait_for(
            lambda: self.alerts(alert_type, follower_id), timeout, what=f"alert {alert_type}"
        )
        return found[-1]

    def pubsub_alerts(self) -> list[dict[str, Any]]:
        """Alerts received on the test's Pub/Sub topic (pulled and acknowledged)."""
        sub = self.pubsub.subscriber
        reply = sub.pull(
            request={"subscription": self.pubsub.subscription_path, "max_messages": 100},
            timeout=5,
        )
        if reply.received_messages:
            sub.acknowledge(
                request={
                    "subscription": self.pubsub.subscription_path,
                    "ack_ids": [m.ack_id for m in reply.received_messages],
                }
            )
        return [json.loads(m.message.data) for m in reply.received_messages]

    def orders(self, order_ref: str) -> list[Any]:
        return self.sim.orders(order_ref=order_ref)
