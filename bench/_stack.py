"""What the broker benchmarks share: ibsim with an acknowledgement recorder, the
real sidecar as a subprocess, and the raw-client baseline as a subprocess.

Why this shape: the figures compare the sidecar with a script that talks to
the gateways directly with ib_async, so both must be timed at the same place.
That place is ibsim: a task on ibsim's own event loop notes (wall clock,
every half millisecond) when each order first exists there and when its limit
changes, which is when ibsim acknowledges it. ibsim runs in this process
(in a thread with its own loop, as in the tests) while the sidecar and the
baseline each run in their own process, so neither shares an interpreter
with the gateway it is measured against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from spreadpilot.clock import NEW_YORK, ScaledClock
from spreadpilot.devstack import PG_DATABASE, PG_PASSWORD, PG_USER, ServiceEnv, ensure_services

from ibsim.market import Scenario
from ibsim.orders import OrderUpdate
from ibsim.sim import IBSim, SimConfig

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
TRADE_DAY = date(2025, 1, 15)
TOKEN = "bench-token-" + uuid.uuid4().hex[:12]


def log(message: str) -> None:
    """Progress on stderr (stdout carries the one JSON object)."""
    print(f"  {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopThread:
    """An asyncio loop in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Acks:
    """Wall times at which ibsim acknowledged orders and limit changes."""

    first_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    ref_of: dict[tuple[str, int], str] = field(default_factory=dict)
    limit_changes: list[tuple[str, int, float, float]] = field(default_factory=list)
    _limits: dict[tuple[str, int], float] = field(default_factory=dict)


class Gateway:
    """ibsim serving ``accounts`` on ephemeral ports, with fills paused and an ack recorder."""

    def __init__(self, accounts: list[str], clock: ScaledClock) -> None:
        self.lt = LoopThread("ibsim")
        self.acks = Acks()
        config = SimConfig(
            listen=[(0, a) for a in accounts],
            clock=clock,
            seed=3,
            scenario=Scenario(spot=480.0, walk_vol=0.0, noise=False),
            pacing_limit=None,
            tick_interval=0.05,
        )

        async def start() -> IBSim:
            sim = IBSim(config)
            for account in sim.accounts.values():
                account.cash = 10_000_000.0
            started = await sim.start()
            sim.control.pause_fills()
            self._record(sim)
            return started

        self.sim = self.lt.run(start())
        self.ports: dict[str, int] = dict(self.sim.ports)

    def _record(self, sim: IBSim) -> None:
        """Time every acknowledgement and limit change as ibsim sends it out.

        Why at the source (``IBSim.observe``) and not a poll of the order
        book: polling every order every half millisecond cost this process
        more CPU than the orders, on a two-core machine where the sidecar and
        the databases need it, and it added up to half a millisecond to
        every figure.
        """
        acks = self.acks

        def seen(event: object) -> None:
            if not isinstance(event, OrderUpdate) or "open" not in event.parts:
                return
            order = event.order
            key = (order.account, order.order_id)
            limit = float(order.ticket.lmt_price or 0.0)
            if key not in acks.first_seen:
                acks.first_seen[key] = time.time()
                acks.ref_of[key] = order.ticket.order_ref or ""
                acks._limits[key] = limit
            elif limit != acks._limits[key]:
                acks._limits[key] = limit
                acks.limit_changes.append((order.account, order.order_id, limit, time.time()))

        sim.observe(seen)

    def snapshot(self) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], str]]:
        return self.lt.call(lambda: (dict(self.acks.first_seen), dict(self.acks.ref_of)))

    def limit_changes(self) -> list[tuple[str, int, float, float]]:
        return self.lt.call(lambda: list(self.acks.limit_changes))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.lt.run(self.sim.stop(), timeout=20)
        self.lt.stop()


def bench_clock(speed: float = 1.0) -> ScaledClock:
    """A fixed session (same quotes every run) at 10:00 New York, running ``speed`` x."""
    return ScaledClock(datetime.combine(TRADE_DAY, dtime(10, 0), tzinfo=NEW_YORK), speed)


@dataclass
class Stores:
    """A PostgreSQL and a MongoDB database of the benchmark's own, dropped afterwards."""

    services: ServiceEnv
    name: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:10]}")

    def create(self) -> Stores:
        import pg8000.native
        from spreadpilot.adapters.postgres import Postgres
        from spreadpilot.storage.migrate import migrate

        admin = pg8000.native.Connection(
            user=PG_USER,
            password=PG_PASSWORD,
            host="127.0.0.1",
            port=self.services.pg_port,
            database=PG_DATABASE,
        )
        try:
            admin.run(f'CREATE DATABASE "{self.name}"')
        finally:
            admin.close()
        migrate(Postgres(self.pg_dsn))
        return self

    @property
    def pg_dsn(self) -> str:
        return self.services.pg_dsn(self.name)

    def mongo(self) -> Any:
        import pymongo

        return pymongo.MongoClient(self.services.mongo_uri, tz_aware=True)[self.name]

    def add_followers(self, gateway: Gateway, accounts: list[str], **limits: Any) -> list[str]:
        from spreadpilot.domain.followers import Follower, GatewayEndpoint
        from spreadpilot.storage.followers import FollowersRepository

        repo = FollowersRepository(self.mongo())
        ids = []
        for i, account in enumerate(accounts):
            fid = f"b{i + 1:03d}"
            repo.add(
                Follower(
                    _id=fid,
                    name=fid,
                    gateway=GatewayEndpoint(
                        host="127.0.0.1", port=gateway.ports[account], client_id=11
                    ),
                    account=account,
                    **limits,
                )
            )
            ids.append(fid)
        return ids

    def drop(self) -> None:
        import pg8000.native
        import pymongo

        with contextlib.suppress(Exception):
            admin = pg8000.native.Connection(
                user=PG_USER,
                password=PG_PASSWORD,
                host="127.0.0.1",
                port=self.services.pg_port,
                database=PG_DATABASE,
            )
            admin.run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.close()
        with contextlib.suppress(Exception):
            client: Any = pymongo.MongoClient(self.services.mongo_uri)
            client.drop_database(self.name)
            client.close()


def stores() -> Stores:
    return Stores(ensure_services()).create()


class Sidecar:
    """``spreadpilot sidecar`` as its own process, on the benchmark's stores and clock."""

    def __init__(self, db: Stores, clock: ScaledClock, followers: list[str], **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        services = db.services
        full = {
            **os.environ,
            "MONGO_URI": services.mongo_uri,
            "MONGO_DB": db.name,
            "PNL_DATABASE_URL": db.pg_dsn,
            # Alerts go to a Redis database of their own, never read.
            "REDIS_URL": f"redis://127.0.0.1:{services.redis_port}/14",
            "PUBSUB_EMULATOR_HOST": services.pubsub_emulator_host,
            "PUBSUB_PROJECT_ID": f"bench-{db.name}",
            "SIDECAR_TOKEN": TOKEN,
            "SIDECAR_HOST": "127.0.0.1",
            "SIDECAR_PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            **clock.to_env(),
            **env,
        }
        self.log_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-sidecar-{self.port}.log"
        with self.log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "spreadpilot"),
                    "sidecar",
                    "--port",
                    str(self.port),
                ],
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60.0
        )
        self.wait_ready(followers)

    def wait_ready(self, followers: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited: {self.log_file.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                sessions = self.http.get("/health").json().get("sessions", {})
                if all(sessions.get(f, {}).get("ready") for f in followers):
                    return
            time.sleep(0.1)
        raise RuntimeError("sidecar sessions not ready in time")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log_file.unlink(missing_ok=True)


class Baseline:
    """``bench/_baseline.py`` in its own process: connect, then one command per line."""

    def __init__(self, mode: str, ports: list[int], accounts: list[str]) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "_baseline.py"),
                mode,
                json.dumps({"ports": ports, "accounts": accounts}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.read()
        if ready.get("ready") is not True:
            raise RuntimeError(f"baseline did not start: {ready}")

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("baseline exited")
        value: dict[str, Any] = json.loads(line)
        return value

    def command(self, **body: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(body) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.command(cmd="quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
