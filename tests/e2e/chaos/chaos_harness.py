"""The assembled system under faults, and the four properties checked after each.

One :class:`ChaosStack` per test: ibsim in-process (one port per follower, one
market), the real ``spreadpilot sidecar`` as a subprocess (so it can be
SIGKILLed), ``dispatch_signal`` and ``alert_fanout`` under functions-framework,
the local Telegram and SendGrid stand-ins, and a Pub/Sub push loop
(:class:`Pusher`) doing what Eventarc does. Every process shares one scaled
clock. The sidecar and the functions reach MongoDB, Redis and PostgreSQL
through :class:`CuttableProxy` ports, so a test can take a store "down" for
them (connections reset, port closed) and bring it back on the same port
without disturbing the shared servers other tests use.

The properties (:meth:`ChaosStack.problems`), each a list of readable
problems so one assertion shows everything that is wrong:

* no duplicate order: each ``orderRef`` appears on at most one ibsim order;
* no lost fill: every ibsim execution is a complete row (with its commission)
  in PostgreSQL ``fills``;
* no lost alert: every alert produced (read from the Redis stream and from
  what Pub/Sub delivered) reached the Telegram stand-in, or is dead-lettered in
  MongoDB ``alerts``; and the sidecar's publisher holds nothing buffered and
  dropped nothing;
* positions: the sidecar's ``/positions`` equal ibsim's account positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

_TESTS = Path(__file__).resolve().parents[2]
for _sub in ("integration/sidecar", "integration/functions"):
    _path = str(_TESTS / _sub)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from fn_harness import FunctionServer  # noqa: E402
from sidecar_harness import (  # noqa: E402
    TOKEN,
    TRADE_DAY,
    LoopThread,
    SidecarProcess,
    Sim,
    free_port,
    wait_for,
)

__all__ = [
    "TOKEN",
    "TRADE_DAY",
    "ChaosStack",
    "CuttableProxy",
    "Pusher",
    "free_port",
    "wait_for",
]

BOT_TOKEN = "424242:chaos-bot-token"
SENDGRID_KEY = "SG.chaos-key"
ADMIN_CHAT = "9001"
ADMIN_EMAIL = "ops@example.com"
# Every severity reaches a person, so "delivered or dead-lettered" applies to every alert.
ROUTING = "INFO=telegram,WARNING=telegram,CRITICAL=telegram+email"
SPEED = 20.0  # simulated seconds per wall second: a 5 s rung is a quarter of a wall second
_CHANNELS = ("telegram_admin", "telegram_follower", "email_admin")
FINAL_STATES = frozenset(
    {
        "FILLED",
        "LIMIT_REACHED",
        "MID_TOO_LOW",
        "NO_MARGIN",
        "REJECTED",
        "FAILED",
        "SKIPPED",
        "POSITION_LIMIT",
    }
)


class CuttableProxy:
    """A TCP pipe to a store that can be cut (port closed, connections reset) and restored.

    Restoring listens on the same port again, so clients configured with the
    proxy's address reconnect by themselves, exactly as after a store restart.
    """

    def __init__(self, lt: LoopThread, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.lt = lt
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.restore()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def restore(self) -> None:
        """Listen again on the same port."""

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

        if self._server is None:
            self.lt.run(start())

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""

        async def cut() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._writers.clear()

        self.lt.run(cut())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._writers -= {writer, up_w}


@dataclass
class Pusher:
    """Pub/Sub push to one function: pull a subscription, POST each message as a CloudEvent.

    A message is acknowledged once a delivery of it got a 2xx; otherwise it is
    handed back (ack deadline 0) and comes again, as Pub/Sub retries a push
    endpoint. With ``twice_shuffled`` every pulled message is delivered twice
    (same message id, as a real redelivery), the batch in random order, and
    concurrently, so duplicates race each other.
    """

    subscriber: Any
    subscription_path: str
    topic: str
    function: FunctionServer
    twice_shuffled: bool = False
    seed: int = 11
    delivered_ids: set[str] = field(default_factory=set)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _held: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Pusher:
        self._thread = threading.Thread(target=self._run, name=f"push-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def hold(self) -> None:
        """Stop pulling (messages pile up in the subscription), e.g. to deliver a batch."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def wait_idle(self, timeout: float, quiet: float = 1.5) -> None:
        """Until nothing was pulled for ``quiet`` seconds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.is_set():
                since = time.monotonic()
                while self._idle.is_set() and time.monotonic() - since < quiet:
                    time.sleep(0.05)
                if self._idle.is_set():
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.topic} push did not drain within {timeout}s")

    def _run(self) -> None:
        rng = random.Random(self.seed)
        with ThreadPoolExecutor(4, thread_name_prefix=f"push-{self.topic}") as pool:
            while not self._stop.is_set():
                if self._held.is_set():
                    self._idle.clear()
                    time.sleep(0.05)
                    continue
                try:
                    reply = self.subscriber.pull(
                        request={"subscription": self.subscription_path, "max_messages": 50},
                        timeout=5,
                    )
                except Exception:
                    time.sleep(0.2)
                    continue
                received = list(reply.received_messages)
                if not received:
                    self._idle.set()
                    time.sleep(0.1)
                    continue
                self._idle.clear()
                plan = [m for m in received for _ in range(2 if self.twice_shuffled else 1)]
                if self.twice_shuffled:
                    rng.shuffle(plan)
                results = list(pool.map(self._deliver, plan))
                ok: dict[str, bool] = {}
                for message, good in zip(plan, results, strict=True):
                    ok[message.ack_id] = ok.get(message.ack_id, False) or good
                acks = [a for a, good in ok.items() if good]
                nacks = [a for a, good in ok.items() if not good]
                with contextlib.suppress(Exception):
                    if acks:
                        self.subscriber.acknowledge(
                            request={"subscription": self.subscription_path, "ack_ids": acks}
                        )
                    if nacks:
                        time.sleep(0.3)  # Pub/Sub's push back-off, shortened
                        self.subscriber.modify_ack_deadline(
                            request={
                                "subscription": self.subscription_path,
                                "ack_ids": nacks,
                                "ack_deadline_seconds": 0,
                            }
                        )

    def _deliver(self, received: Any) -> bool:
        message = received.message
        self.attempts += 1
        with contextlib.suppress(ValueError):
            body = json.loads(message.data)
            if isinstance(body, dict):
                key = str(body.get("id") or body.get("signal_id") or message.message_id)
                self.payloads[key] = body
                self.delivered_ids.add(key)
        try:
            reply = self.function.cloud_event(
                message.data,
                dict(message.attributes),
                message_id=message.message_id,
                topic=self.topic,
                timeout=60,
            )
        except httpx.HTTPError:
            self.failures += 1
            return False
        if reply.status_code >= 300:
            self.failures += 1
            return False
        return True


@dataclass
class ChaosStack:
    """The running system for one test, and the checks."""

    sim: Sim
    accounts: dict[str, str]  # follower id -> account
    env: dict[str, str]
    sidecar_port: int
    proxies: dict[str, CuttableProxy]
    mongo: Any  # pymongo Database (direct, not through the proxy)
    redis: Any  # redis client on the test's database (direct)
    pg_dsn: str  # direct
    telegram: Any
    sendgrid: Any
    pushers: dict[str, Pusher] = field(default_factory=dict)
    functions: dict[str, FunctionServer] = field(default_factory=dict)
    procs: list[SidecarProcess] = field(default_factory=list)
    http: httpx.Client | None = None
    publisher: Any = None  # pubsub_v1.PublisherClient on the fake
    project: str = ""
    log_dir: Path | None = None

    def publish_signal(self, signal: Any, follower_id: str | None = None) -> None:
        """Put a signal on Pub/Sub ``signals`` as ``spreadpilot signal publish`` does."""
        attributes = {"signal_id": signal.signal_id, "source": signal.source}
        if follower_id:
            attributes["follower_id"] = follower_id
        topic = self.publisher.topic_path(self.project, "signals")
        self.publisher.publish(topic, signal.to_json().encode(), **attributes).result(10)

    # -- the sidecar --------------------------------------------------------------

    @property
    def sidecar(self) -> SidecarProcess:
        return self.procs[-1]

    def start_sidecar(self, timeout: float = 60.0) -> SidecarProcess:
        proc = SidecarProcess(self.env, self.sidecar_port)
        self.procs.append(proc)
        proc.wait_ready(list(self.accounts), timeout=timeout)
        return proc

    def kill_sidecar(self) -> None:
        self.sidecar.kill()

    @property
    def client(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(
                base_url=f"http://127.0.0.1:{self.sidecar_port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30.0,
            )
        return self.http

    def post_signal(self, **body: Any) -> list[str]:
        reply = self.client.post("/trade/signal", json=body)
        assert reply.status_code == 202, reply.text
        return [str(e["execution_id"]) for e in reply.json()["executions"]]

    def execution(self, execution_id: str) -> dict[str, Any]:
        reply = self.client.get(f"/executions/{execution_id}")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def wait_executions(
        self,
        ids: list[str],
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 30.0,
        what: str = "",
    ) -> list[dict[str, Any]]:
        last: list[Any] = []

        def check() -> list[dict[str, Any]] | None:
            try:
                records = [self.execution(i) for i in ids]
            except (httpx.HTTPError, AssertionError) as exc:
                last[:] = [repr(exc)]
                return None
            last[:] = [
                {k: r.get(k) for k in ("execution_id", "state", "rung", "filled_qty")}
                for r in records
            ]
            return records if all(predicate(r) for r in records) else None

        try:
            return wait_for(check, timeout, interval=0.1, what=what or f"executions {ids}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast seen: {last}\n{self.logs_tail()}") from None

    def executions_in_mongo(self, signal_id: str | None = None) -> list[dict[str, Any]]:
        query = {} if signal_id is None else {"signal_id": signal_id}
        return list(self.mongo["executions"].find(query))

    # -- the properties ----------------------------------------------------------

    def duplicate_orders(self) -> list[str]:
        refs = Counter(o.ticket.order_ref for o in self.sim.orders() if o.ticket.order_ref)
        return [f"orderRef {ref} on {n} ibsim orders" for ref, n in refs.items() if n > 1]

    def sim_executions(self) -> list[Any]:
        accounts = set(self.accounts.values())

        def pick() -> list[Any]:
            out: list[Any] = []
            for account, execs in self.sim.sim.broker.executions.items():
                if account in accounts:
                    out.extend(execs)
            return out

        return self.sim.lt.call(pick)

    def lost_fills(self) -> list[str]:
        from urllib.parse import urlsplit

        import pg8000.native

        parts = urlsplit(self.pg_dsn)
        conn = pg8000.native.Connection(
            user=parts.username or "",
            password=parts.password,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            database=parts.path.lstrip("/"),
        )
        try:
            rows = conn.run("SELECT exec_id, follower_id, commission FROM fills")
        finally:
            conn.close()
        stored = {r[0]: (r[1], r[2]) for r in rows}
        problems = []
        for ex in self.sim_executions():
            row = stored.get(ex.exec_id)
            if row is None:
                problems.append(f"execution {ex.exec_id} ({ex.order_ref}) not in fills")
            elif row[0] is None:
                problems.append(f"execution {ex.exec_id} has only its commission half")
            elif row[1] is None:
                problems.append(f"execution {ex.exec_id} has no commission")
        return problems

    def produced_alerts(self) -> dict[str, dict[str, Any]]:
        """Every alert seen: the Redis stream ``alerts`` and what Pub/Sub delivered."""
        out: dict[str, dict[str, Any]] = {}
        for _id, fields in self.redis.xrange("alerts"):
            raw = fields.get(b"alert") or fields.get("alert")
            alert = json.loads(raw)
            out[alert["id"]] = alert
        pusher = self.pushers.get("alerts")
        if pusher is not None:
            for key, body in pusher.payloads.items():
                out.setdefault(key, body)
        return out

    def telegram_by_alert(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for message in self.telegram.messages:
            for line in message.text.splitlines():
                if line.startswith("id: "):
                    counts[line[4:].strip()] += 1
        return counts

    def lost_alerts(self, *, exactly_once: bool = False) -> list[str]:
        produced = self.produced_alerts()
        sent = self.telegram_by_alert()
        dead = {
            str(doc["_id"])
            for doc in self.mongo["alerts"].find({})
            if any(d.get("status") == "dead" for d in (doc.get("deliveries") or {}).values())
        }
        problems = []
        for alert_id, alert in produced.items():
            if sent[alert_id] == 0 and alert_id not in dead:
                problems.append(f"alert {alert['type']} {alert_id} neither sent nor dead-lettered")
            elif exactly_once and sent[alert_id] > 1:
                problems.append(f"alert {alert['type']} {alert_id} sent {sent[alert_id]} times")
        for sink in self.status().get("alert_sinks", []):
            if sink.get("buffered") or sink.get("dropped"):
                problems.append(f"sidecar alert sink {sink}")
        return problems

    def status(self) -> dict[str, Any]:
        reply = self.client.get("/status")
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def position_mismatches(self) -> list[str]:
        reply = self.client.get("/positions")
        assert reply.status_code == 200, reply.text
        problems = []
        for entry in reply.json()["followers"]:
            fid = entry["follower_id"]
            if "error" in entry:
                problems.append(f"{fid}: {entry['error']}")
                continue
            seen: Counter[int] = Counter()
            for spread in entry["spreads"]:
                for leg in (spread["long"], spread["short"]):
                    seen[int(leg["con_id"])] += int(leg["qty"])
            for orphan in entry["orphans"]:
                seen[int(orphan["con_id"])] += int(orphan["qty"])
            sidecar = {k: v for k, v in seen.items() if v}
            ib = {k: int(v) for k, v in self.sim.positions(self.accounts[fid]).items() if v}
            if sidecar != ib:
                problems.append(f"{fid}: sidecar {sidecar} != ibsim {ib}")
        return problems

    def settle(self, timeout: float = 40.0) -> None:
        """Let the system catch up: fills written, alerts published and fanned out."""

        def caught_up() -> bool:
            with contextlib.suppress(httpx.HTTPError, AssertionError):
                status = self.status()
                sinks = status.get("alert_sinks", [])
                return status["fills"]["pending"] == 0 and not any(s.get("buffered") for s in sinks)
            return False

        wait_for(caught_up, timeout, interval=0.2, what="sidecar fills and alerts flushed")
        wait_for(lambda: not self.lost_fills(), timeout, interval=0.3, what="fills in PostgreSQL")
        for pusher in self.pushers.values():
            pusher.wait_idle(timeout)

    def assert_properties(self, *, exactly_once_alerts: bool = False) -> dict[str, int]:
        """The four properties, after letting the system catch up.

        Returns what was checked (orders, executions, alerts, telegram messages),
        so a test can also assert that the checks had something to bite on.
        """
        self.settle()
        wait_for(
            lambda: not self.position_mismatches(), 15, interval=0.3, what="positions to agree"
        )
        problems = (
            self.duplicate_orders()
            + self.lost_fills()
            + self.lost_alerts(exactly_once=exactly_once_alerts)
            + self.position_mismatches()
        )
        assert not problems, "\n".join(problems) + "\n" + self.logs_tail()
        return {
            "orders": len(self.sim.orders()),
            "executions": len(self.sim_executions()),
            "alerts": len(self.produced_alerts()),
            "telegram": len(self.telegram.messages),
            "dead_letters": self.mongo["alerts"].count_documents(
                {"$or": [{f"deliveries.{c}.status": "dead"} for c in _CHANNELS]}
            ),
        }

    def logs_tail(self, chars: int = 4000) -> str:
        """The end of the sidecar's log, and where every process's full log was saved."""
        if self.log_dir is not None:
            for n, proc in enumerate(self.procs):
                (self.log_dir / f"sidecar-{n}.log").write_text(proc.log)
        where = f"(full logs in {self.log_dir})\n" if self.log_dir is not None else ""
        return where + (self.sidecar.log[-chars:] if self.procs else "")

    def stop(self) -> None:
        for pusher in self.pushers.values():
            pusher.stop()
        if self.http is not None:
            self.http.close()
        for proc in self.procs:
            proc.stop()
        for fn in self.functions.values():
            fn.stop()


@contextlib.contextmanager
def timed(label: str, budget: float) -> Iterator[None]:
    """Fail loudly when a scenario blows its wall-time budget (the suite must stay bounded)."""
    start = time.monotonic()
    yield
    spent = time.monotonic() - start
    assert spent <= budget, f"{label} took {spent:.1f}s (budget {budget:.0f}s)"


ChaosFactory = Callable[..., ChaosStack]
