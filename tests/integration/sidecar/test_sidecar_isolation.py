"""Followers are isolated, and a signal is executed at most once per follower."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from sidecar_harness import FollowerSpec, wait_for

pytestmark = pytest.mark.integration

BODY = {"strategy": "bull_put", "qty_per_leg": 1, "strike_long": 475, "strike_short": 480}


def _event_time(record: dict[str, Any], state: str) -> datetime:
    for event in record["events"]:
        if event["state"] == state:
            return datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
    raise AssertionError(f"{record['execution_id']} never {state}")


def test_three_followers_are_isolated(make_stack: Any) -> None:
    """No margin, gateway down, and a follower that fills: the third is not slowed."""
    stack = make_stack(
        [
            FollowerSpec("poor", "DU0000001", equity=100.0),
            FollowerSpec("offline", "DU0000002", down=True),
            FollowerSpec("rich", "DU0000003"),
        ],
        settings={"sidecar_ready_timeout_seconds": 4.0},
    )
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**BODY)
    assert r.status_code == 202, r.text
    ids = {e["follower_id"]: e["execution_id"] for e in r.json()["executions"]}
    assert set(ids) == {"poor", "offline", "rich"}

    # The healthy follower's order is working while the offline one is still
    # waiting for its gateway (4 s wall): nothing serialises followers.
    rich = stack.wait_state(ids["rich"], {"WORKING"}, timeout=10)
    offline_now = stack.execution(ids["offline"])
    assert offline_now["state"] not in ("FAILED",), "rich waited for offline"
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())

    assert stack.wait_final(ids["poor"])["state"] == "NO_MARGIN"
    offline = stack.wait_final(ids["offline"])
    assert offline["state"] == "FAILED"
    rich = stack.wait_final(ids["rich"])
    assert rich["state"] == "FILLED"
    assert _event_time(rich, "WORKING") < _event_time(offline, "FAILED")

    assert stack.wait_alert("NO_MARGIN", "poor")
    assert stack.wait_alert("EXECUTION_FILLED", "rich")
    assert any(
        a["params"].get("execution_id") == ids["offline"]
        for a in stack.alerts("GATEWAY_UNREACHABLE", "offline")
    )
    assert stack.sim.orders(order_ref=rich["order_ref"])
    assert not stack.sim.orders(order_ref=stack.execution(ids["poor"])["order_ref"])


def test_ten_concurrent_deliveries_one_order_per_follower(make_stack: Any) -> None:
    stack = make_stack([FollowerSpec("alice", "DU0000001"), FollowerSpec("bob", "DU0000002")])
    stack.sim.control(lambda c: c.pause_fills())

    def deliver(_: int) -> Any:
        with stack.sidecar.client() as client:
            return client.post("/trade/signal", json=BODY)

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(deliver, range(10)))
    assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
    ids = {(e["follower_id"], e["execution_id"]) for r in replies for e in r.json()["executions"]}
    assert len(ids) == 2
    created = [e for r in replies for e in r.json()["executions"] if e["created"]]
    assert len(created) == 2

    refs = {}
    for follower_id, execution_id in ids:
        rec = stack.wait_state(execution_id, {"WORKING"}, timeout=15)
        refs[follower_id] = rec["order_ref"]
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    for _, execution_id in ids:
        assert stack.wait_final(execution_id)["state"] == "FILLED"
    for follower_id, ref in refs.items():
        assert len(stack.sim.orders(order_ref=ref)) == 1, follower_id
    assert len(stack.sim.orders(prefix="sp-")) == 2
    assert stack.db["executions"].count_documents({}) == 2

    # A late redelivery after the end changes nothing.
    late = stack.post_signal(**BODY)
    assert late.status_code == 202
    assert all(not e["created"] for e in late.json()["executions"])
    wait_for(lambda: True, 0.1)
    assert len(stack.sim.orders(prefix="sp-")) == 2


def test_wrong_account_on_gateway_never_trades(make_stack: Any) -> None:
    """A gateway logged into another account than the follower's: no session, no order."""
    from spreadpilot.domain.followers import Follower, GatewayEndpoint
    from spreadpilot.storage.followers import FollowersRepository

    stack = make_stack([FollowerSpec("alice", "DU0000001")])
    FollowersRepository(stack.db).add(
        Follower(
            _id="mallory",
            name="mallory",
            gateway=GatewayEndpoint(host="127.0.0.1", port=stack.port_of("alice"), client_id=77),
            account="DU9999999",
        )
    )
    wait_for(
        lambda: (
            stack.client.get("/health").json()["sessions"].get("mallory", {}).get("state")
            == "WRONG_ACCOUNT"
        ),
        15,
    )
    r = stack.post_signal(**BODY, follower_id="mallory")
    ex = r.json()["executions"][0]["execution_id"]
    assert stack.wait_final(ex)["state"] == "FAILED"
    assert stack.sim.orders(prefix="sp-") == []
    alert = stack.wait_alert("GATEWAY_UNREACHABLE", "mallory")
    assert alert["severity"] == "CRITICAL"


def test_designated_market_data_session_quotes_for_others(make_stack: Any) -> None:
    stack = make_stack(
        [FollowerSpec("alice", "DU0000001"), FollowerSpec("quotes", "DU0000002")],
        settings={"sidecar_market_data_follower": "quotes"},
    )
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**BODY, follower_id="alice")
    ex = r.json()["executions"][0]["execution_id"]
    rec = stack.wait_state(ex, {"WORKING"})
    assert rec["quotes"]["short"]["bid"] > 0
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    assert stack.wait_final(ex)["state"] == "FILLED"
    view = stack.client.get("/positions/alice").json()
    assert view["spreads"][0]["short"]["mid"] is not None
