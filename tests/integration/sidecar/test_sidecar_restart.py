"""Restart and reconnect safety: one order per execution, whatever happens.

The SIGKILL tests run ``spreadpilot sidecar`` as a real process sharing the
scaled clock (SIM_* variables) with an in-process ibsim; the kill lands in the
middle of a ladder, and the restarted process must adopt the working order by
orderRef, keep modifying it in place, and finish in a correct state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from sidecar_harness import (
    TOKEN,
    TRADE_DAY,
    FollowerSpec,
    SidecarProcess,
    Sim,
    free_port,
    make_clock,
    wait_for,
    wall_seconds,
)
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.domain.followers import Follower, GatewayEndpoint
from spreadpilot.storage.fills import FillsRepository
from spreadpilot.storage.followers import FollowersRepository
from spreadpilot.storage.migrate import migrate

pytestmark = pytest.mark.integration

ACCOUNT = "DU0000001"
BODY = {
    "strategy": "bull_put",
    "qty_per_leg": 2,
    "strike_long": 475,
    "strike_short": 480,
    "follower_id": "alice",
}


class ProcStack:
    def __init__(self, sim: Sim, env: dict[str, str], port: int) -> None:
        self.sim = sim
        self.env = env
        self.port = port
        self.procs: list[SidecarProcess] = []

    def start(self) -> SidecarProcess:
        proc = SidecarProcess(self.env, self.port)
        self.procs.append(proc)
        proc.wait_ready(["alice"], timeout=40)
        return proc

    def execution(self, proc: SidecarProcess, execution_id: str) -> dict[str, Any]:
        with proc.client() as c:
            r = c.get(f"/executions/{execution_id}")
            assert r.status_code == 200, r.text
            return dict(r.json())


@pytest.fixture
def proc_stack(devstack: Any, mongo_db: Any, pg_dsn: str) -> Iterator[Callable[..., ProcStack]]:
    made: list[ProcStack] = []

    def factory(timeout_seconds: float = 10.0) -> ProcStack:
        clock = make_clock(20.0)
        sim = Sim([ACCOUNT], clock)
        FollowersRepository(mongo_db).add(
            Follower(
                _id="alice",
                name="alice",
                gateway=GatewayEndpoint(host="127.0.0.1", port=sim.ports[ACCOUNT], client_id=21),
                account=ACCOUNT,
                max_open_spreads=5,
            )
        )
        migrate(Postgres(pg_dsn))
        env = {
            "MONGO_URI": devstack.mongo_uri,
            "MONGO_DB": mongo_db.name,
            "REDIS_URL": devstack.redis_url,
            "PNL_DATABASE_URL": pg_dsn,
            "SIDECAR_TOKEN": TOKEN,
            "TIMEOUT_SECONDS": str(timeout_seconds),
            "SIDECAR_HEALTH_INTERVAL_SECONDS": "0.5",
            "SIDECAR_RECONNECT_INITIAL_SECONDS": "0.2",
            "SIDECAR_RECONNECT_MAX_SECONDS": "1",
            "SIDECAR_CONNECT_TIMEOUT_SECONDS": "2",
            **clock.to_env(),
        }
        stack = ProcStack(sim, env, free_port())
        made.append(stack)
        return stack

    yield factory
    for stack in made:
        for proc in stack.procs:
            proc.stop()
        stack.sim.stop()


def _signal(proc: SidecarProcess) -> str:
    with proc.client() as c:
        r = c.post("/trade/signal", json=BODY)
    assert r.status_code == 202, r.text
    return str(r.json()["executions"][0]["execution_id"])


def _wait(
    proc: SidecarProcess, stack: ProcStack, ex: str, pred: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        rec = stack.execution(proc, ex)
        return rec if pred(rec) else None

    return wait_for(check, 40, interval=0.05)


FINAL = {"FILLED", "LIMIT_REACHED", "REJECTED", "FAILED"}


def test_sigkill_mid_ladder_then_restart_resumes_same_order(
    proc_stack: Callable[..., ProcStack],
) -> None:
    stack = proc_stack()
    stack.sim.control(lambda c: c.pause_fills())
    first = stack.start()
    ex = _signal(first)
    before = _wait(
        first, stack, ex, lambda r: r["state"] == "WORKING" and (r.get("rung") or 0) >= 1
    )
    first.kill()

    orders = stack.sim.orders(order_ref=before["order_ref"])
    assert len(orders) == 1 and orders[0].status == "Submitted"

    second = stack.start()
    # The new process keeps walking the ladder on the same order...
    moved = _wait(second, stack, ex, lambda r: (r.get("rung") or 0) > before["rung"] + 1)
    orders = stack.sim.orders(order_ref=before["order_ref"])
    assert len(orders) == 1
    assert orders[0].order_id == before["order_id"]
    assert orders[0].ticket.lmt_price < 0
    # ...and finishes it once the market comes to the limit.
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    rec = _wait(second, stack, ex, lambda r: r["state"] in FINAL)
    assert rec["state"] == "FILLED" and rec["filled_qty"] == 2
    assert rec["rung"] >= moved["rung"]
    assert len(stack.sim.orders(prefix="sp-")) == 1
    fills = FillsRepository(Postgres(stack.env["PNL_DATABASE_URL"]))
    rows = wait_for(lambda: fills.list_by_order_ref(before["order_ref"]), 20)
    assert {r.side for r in rows} == {"BOT", "SLD"}


def test_sigkill_then_fill_while_down_settles_without_new_order(
    proc_stack: Callable[..., ProcStack],
) -> None:
    stack = proc_stack()
    stack.sim.control(lambda c: c.pause_fills())
    first = stack.start()
    ex = _signal(first)
    before = _wait(first, stack, ex, lambda r: r["state"] == "WORKING" and r.get("submitted"))
    first.kill()
    # The order fills while no sidecar is running.
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    wait_for(lambda: stack.sim.orders(order_ref=before["order_ref"])[0].status == "Filled", 20)

    second = stack.start()
    rec = _wait(second, stack, ex, lambda r: r["state"] in FINAL)
    assert rec["state"] == "FILLED" and rec["filled_qty"] == 2
    assert len(stack.sim.orders(prefix="sp-")) == 1


def test_gateway_dropped_mid_ladder_reconnects_without_duplicate(make_stack: Any) -> None:
    stack = make_stack([FollowerSpec("alice", ACCOUNT)], settings={"timeout_seconds": 10.0})
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**BODY)
    ex = r.json()["executions"][0]["execution_id"]
    before = stack.wait_state(ex, {"WORKING"})
    wait_for(lambda: (stack.execution(ex).get("rung") or 0) >= 1, 20)
    port = stack.port_of("alice")
    assert stack.sim.control(lambda c: c.drop_connections(port)) >= 1
    # The session comes back (reconnect + reconcile) and the ladder continues.
    metrics = wait_for(
        lambda: (
            'spreadpilot_reconnects_total{follower_id="alice"} 1.0'
            in stack.client.get("/metrics").text
        ),
        20,
    )
    assert metrics
    rung_after = (stack.execution(ex).get("rung") or 0) + 1
    wait_for(lambda: (stack.execution(ex).get("rung") or 0) >= rung_after, 20)
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    rec = stack.wait_final(ex)
    assert rec["state"] == "FILLED"
    orders = stack.sim.orders(order_ref=before["order_ref"])
    assert len(orders) == 1 and orders[0].order_id == before["order_id"]
    assert any(
        "mid-ladder" in a["message"] or a["params"].get("event") == "disconnected"
        for a in stack.alerts("GATEWAY_UNREACHABLE", "alice")
    )


def _record_crashed_before_send(stack: Any, submitted: bool) -> dict[str, Any]:
    """An execution record exactly as the executor leaves it when the process dies
    after writing "order about to be sent" (WORKING, order id reserved) and, for
    ``submitted``, after also writing "sent"; written through the sidecar's own store.
    """
    import asyncio

    from spreadpilot.domain.execution import ExecutionState as S
    from spreadpilot.domain.signals import manual_signal

    from ibsim.contracts import option_con_id
    from sidecar.stores_impl import MongoExecutionStore

    store = MongoExecutionStore(stack.db)
    now = stack.clock.now()
    body = {**BODY, "qty_per_leg": 1, "signal_id": f"crash-{submitted}-{uuid4().hex[:6]}"}
    signal = manual_signal(body, today=TRADE_DAY)
    ladder = [
        {"credit": round(1.50 - k * 0.01, 2), "limit": -round(1.50 - k * 0.01, 2)}
        for k in range(10)
    ]

    async def build() -> dict[str, Any]:
        ((created, rec),) = await store.create_many(signal, ["alice"], now)
        assert created
        rec = await store.advance(rec, S.SIZED, {"qty": 1}, now)
        legs = {
            "long": {"con_id": option_con_id(TRADE_DAY, 475.0, "P"), "strike": 475.0, "right": "P"},
            "short": {
                "con_id": option_con_id(TRADE_DAY, 480.0, "P"),
                "strike": 480.0,
                "right": "P",
            },
            "expiry": TRADE_DAY.strftime("%Y%m%d"),
            "symbol": "QQQ",
        }
        rec = await store.advance(
            rec,
            S.QUOTED,
            {
                "legs": legs,
                "mid_credit": 1.5,
                "natural_credit": 1.4,
                "min_price": 0.7,
                "ladder": ladder,
            },
            now,
        )
        rec = await store.advance(rec, S.MARGIN_OK, {"margin": {"init_margin_change": 350.0}}, now)
        # The order id is reserved and written before the order would be sent...
        rec = await store.advance(
            rec,
            S.WORKING,
            {
                "order_id": 90_001,
                "submitted": False,
                "rung": 0,
                "limit": -1.5,
                "rung_started_at": now,
                "qty": 1,
                "initial_limit": -1.5,
            },
            now,
        )
        if submitted:  # ...and "sent" after it was handed to the socket.
            rec = await store.advance(rec, S.WORKING, {"submitted": True, "perm_id": None}, now)
        return rec

    return asyncio.run(build())


@pytest.mark.parametrize("submitted", [False, True], ids=["crash-before-send", "sent-no-trace"])
def test_record_of_an_order_ib_never_saw_fails_closed_after_restart(
    make_stack: Any, submitted: bool
) -> None:
    """WORKING record, order id reserved, IB has no order, execution or completed order
    with its orderRef. The restarted sidecar never (re)sends: FAILED plus a CRITICAL
    alert for a person, whether or not the record got as far as "sent"."""
    stack = make_stack([FollowerSpec("alice", ACCOUNT)])
    record = _record_crashed_before_send(stack, submitted)
    ex, ref = record["_id"], record["order_ref"]
    assert stack.orders(ref) == []

    stack.restart_sidecar()
    rec = stack.wait_final(ex, timeout=30)
    assert rec["state"] == "FAILED"
    assert rec.get("filled_qty") in (None, 0)
    alerts = [
        a
        for a in stack.alerts("GATEWAY_UNREACHABLE", "alice")
        if a["params"].get("execution_id") == ex
    ]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["severity"] == "CRITICAL"
    assert alert["params"]["order_ref"] == ref and alert["params"]["submitted"] is submitted
    assert "not re-sending" in alert["message"]

    # No order ever: not now, not after the clock moves on, not after another restart.
    time.sleep(wall_seconds(20.0))
    assert stack.orders(ref) == [] and stack.sim.orders(prefix="sp-") == []
    stack.restart_sidecar()
    time.sleep(wall_seconds(20.0))
    assert stack.execution(ex)["state"] == "FAILED"
    assert stack.orders(ref) == [] and stack.sim.orders(prefix="sp-") == []
    assert not any(stack.sim.positions(ACCOUNT).values())
