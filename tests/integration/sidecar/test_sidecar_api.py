"""The HTTP surface: auth, validation, positions and liquidation, metrics, status, fuzz."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sidecar_harness import FollowerSpec, Stack, wait_for
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.storage.fills import FillsRepository

pytestmark = pytest.mark.integration

BODY = {"strategy": "Long", "qty_per_leg": 3, "strike_long": 475, "strike_short": 480}

PROTECTED = [
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("GET", "/positions"),
    ("GET", "/positions/alice"),
    ("GET", "/executions/x"),
    ("POST", "/trade/signal"),
    ("POST", "/liquidate"),
    ("POST", "/close/all"),
    ("POST", "/close/alice"),
    ("POST", "/halt"),
    ("POST", "/resume"),
]


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    return make_stack([FollowerSpec("alice", "DU0000001")])  # type: ignore[no-any-return]


def fill_one(stack: Stack, body: dict[str, Any] | None = None) -> dict[str, Any]:
    stack.sim.control(lambda c: c.pause_fills())
    r = stack.post_signal(**(body or BODY))
    assert r.status_code == 202, r.text
    ex = r.json()["executions"][0]["execution_id"]
    stack.wait_state(ex, {"WORKING"})
    stack.sim.control(lambda c: c.shift_spot(-1.0))
    stack.sim.control(lambda c: c.resume_fills())
    rec = stack.wait_final(ex)
    assert rec["state"] == "FILLED"
    return rec


def test_auth_required_everywhere_but_health(stack: Stack) -> None:
    with httpx.Client(base_url=stack.sidecar.url) as anon:
        assert anon.get("/health").status_code == 200
        for method, path in PROTECTED:
            assert anon.request(method, path).status_code == 401, path
            wrong = anon.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            basic = anon.request(method, path, headers={"Authorization": "Basic dXNlcjpw"})
            assert basic.status_code == 401, path
    # No state changed through any of those.
    assert stack.client.get("/status").json()["kill_switch"]["global"] == "ACTIVE"


def test_openapi_and_route_order(stack: Stack) -> None:
    schema = stack.client.get("/openapi.json").json()
    paths = list(schema["paths"])
    assert paths.index("/close/all") < paths.index("/close/{follower_id}")
    for path in ("/trade/signal", "/executions/{execution_id}", "/positions", "/liquidate"):
        assert path in paths
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**BODY, "strike_long": 480, "strike_short": 475}, "bull put"),
        ({**BODY, "qty_per_leg": 0}, "qty"),
        ({**BODY, "strategy": "iron_condor"}, "unknown strategy"),
        ({**BODY, "strike_long": 475.5}, "grid"),
        ({**BODY, "ticker": "SPY"}, "ticker"),
        ({**BODY, "colour": "red"}, "colour"),
        ({"strategy": "Long"}, "qty_per_leg"),
    ],
)
def test_invalid_signal_is_422_with_reason(stack: Stack, body: dict[str, Any], reason: str) -> None:
    r = stack.post_signal(**body)
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]
    assert stack.db["executions"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**BODY, "qty_per_leg": 10**30}, "qty"),
        ({**BODY, "qty_per_leg": 51}, "outside 1..50"),
        ({**BODY, "strike_long": 455}, "MAX_SPREAD_WIDTH"),
        ({**BODY, "strike_long": 445.5}, "grid"),
    ],
)
def test_signals_beyond_the_limits_are_422_and_never_traded(
    stack: Stack, body: dict[str, Any], reason: str
) -> None:
    """The same limits dispatch_signal enforces on Pub/Sub messages (defence in depth)."""
    r = stack.post_signal(**body)
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]
    assert stack.db["executions"].count_documents({}) == 0
    assert stack.sim.orders() == []


def test_limits_are_this_sidecars_settings(make_stack: Any) -> None:
    stack = make_stack(
        [FollowerSpec("alice", "DU0000001")],
        settings={"max_qty_per_leg": 2, "max_spread_width": 3.0},
    )
    for body, reason in (
        ({**BODY, "qty_per_leg": 3}, "outside 1..2"),
        ({**BODY, "qty_per_leg": 2, "strike_long": 476}, "MAX_SPREAD_WIDTH"),
    ):
        r = stack.post_signal(**body)
        assert r.status_code == 422, r.text
        assert reason in r.json()["detail"], r.text
    assert stack.db["executions"].count_documents({}) == 0


def test_unknown_follower_and_execution_are_404(stack: Stack) -> None:
    assert stack.post_signal(**BODY, follower_id="nobody").status_code == 404
    assert stack.client.get("/executions/nope").status_code == 404
    # Ids no execution can have never reach the store (MongoDB refuses a NUL).
    for bad in ("%00", "a%0Ab", "x" * 300, "%20lead"):
        assert stack.client.get(f"/executions/{bad}").status_code == 404, bad
    assert stack.client.get("/positions/nobody").status_code == 404
    r = stack.client.post("/liquidate", json={"follower_id": "nobody", "spread_id": "x"})
    assert r.status_code == 404


def test_positions_liquidate_fills_and_metrics(stack: Stack) -> None:
    rec = fill_one(stack)
    r = stack.client.get("/positions/alice")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["underlying"]["mid"] > 0
    [spread] = view["spreads"]
    assert spread["right"] == "P" and spread["qty"] == 3
    assert (spread["strike_long"], spread["strike_short"]) == (475, 480)
    for leg in ("long", "short"):
        assert spread[leg]["mid"] is not None and spread[leg]["tv"] is not None
        assert spread[leg]["intrinsic"] is not None
    assert spread["status"] in ("SAFE", "RISK", "CRITICAL")
    assert spread["tv"] == spread["short"]["tv"]
    everyone = stack.client.get("/positions").json()["followers"]
    assert everyone[0]["spreads"][0]["spread_id"] == spread["spread_id"]
    # The functions' client reads this shape.
    from spreadpilot.adapters.sidecar_client import SidecarClient, parse_positions

    parsed = parse_positions(everyone[0])
    assert parsed.error is None and parsed.underlying_mid == view["underlying"]["mid"]
    assert parsed.spreads[0].short.strike == 480 and parsed.spreads[0].qty == 3
    client = SidecarClient(stack.sidecar.url, "test-token-1234567890")
    assert client.positions("alice")["follower_id"] == "alice"

    # Fills and commissions reach PostgreSQL, one row per leg execution.
    fills = FillsRepository(Postgres(stack.pg_dsn))
    rows = wait_for(
        lambda: [r for r in fills.list_by_order_ref(rec["order_ref"]) if r.commission], 15
    )
    assert {r.side for r in rows} == {"BOT", "SLD"}
    assert sum(r.qty for r in rows) == 6

    r = stack.client.post(
        "/liquidate",
        json={"follower_id": "alice", "spread_id": spread["spread_id"], "reason": "TV_CRITICAL"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "FILLED" and r.json()["filled"] == 3
    wait_for(lambda: not stack.client.get("/positions/alice").json()["spreads"], 10)
    alert = stack.wait_alert("TV_LIQUIDATED", "alice")
    assert alert["params"]["spread_id"] == spread["spread_id"]
    r = stack.client.post(
        "/liquidate", json={"follower_id": "alice", "spread_id": spread["spread_id"]}
    )
    assert r.status_code == 404

    text = stack.client.get("/metrics").text
    for name in (
        'spreadpilot_orders_sent_total{follower_id="alice",kind="entry"} 1.0',
        'spreadpilot_orders_sent_total{follower_id="alice",kind="liquidation"} 1.0',
        'spreadpilot_session_up{follower_id="alice"} 1.0',
        "spreadpilot_signal_to_first_order_seconds_count",
        "spreadpilot_rung_reached_count",
        "spreadpilot_fills_total",
    ):
        assert name in text, name

    status = stack.client.get("/status").json()
    assert status["followers"][0]["follower_id"] == "alice"
    assert status["sessions"][0]["healthy"] is True
    assert status["sessions"][0]["account_ok"] is True
    assert status["last_signal"]["signal_id"] == rec["signal_id"]
    assert status["working_executions"] == []


def test_position_limit(make_stack: Any) -> None:
    stack = make_stack([FollowerSpec("alice", "DU0000001", max_open_spreads=1)])
    fill_one(stack)
    r = stack.post_signal(**{**BODY, "strike_long": 474, "strike_short": 479})
    ex = r.json()["executions"][0]["execution_id"]
    assert stack.wait_final(ex)["state"] == "POSITION_LIMIT"
    p = stack.wait_alert("POSITION_LIMIT", "alice")["params"]
    assert p["open_spreads"] == 1 and p["max_open_spreads"] == 1
    assert len(stack.sim.orders(prefix="sp-")) == 1


# -- fuzz ---------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _from_schema(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A hypothesis strategy for an OpenAPI (JSON Schema) fragment, with junk mixed in."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _from_schema(components[name], components, depth + 1)
    if "anyOf" in schema:
        return st.one_of([_from_schema(s, components, depth + 1) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object" and depth < 4:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {k: _from_schema(v, components, depth + 1) for k, v in props.items()}
        optional = {k: v for k, v in fields.items() if k not in required}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required}, optional=optional
        )
    if kind == "string":
        if "enum" in schema:
            return st.sampled_from(schema["enum"]) | st.text(max_size=12)
        return st.sampled_from(["alice", "all", "bull_put", "Long", "2025-01-15"]) | st.text(
            max_size=40
        )
    if kind == "integer":
        return st.integers(-(10**12), 10**12)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    return _json


def test_fuzz_openapi_no_5xx(stack: Stack) -> None:
    schema = stack.client.get("/openapi.json").json()
    components = schema.get("components", {}).get("schemas", {})
    stack.client.post("/halt", json={"mode": "halt"})  # fuzzing must not trade
    operations = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            body_schema = (
                op.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            operations.append((path, method.upper(), body_schema))

    path_text = st.sampled_from(
        ["alice", "all", "nobody", "x" * 300, "%00", "..", "a b"]
    ) | st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
        min_size=1,
        max_size=30,
    )

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        path, method, body_schema = data.draw(st.sampled_from(operations))
        if path in ("/resume",):
            return  # resuming would let a fuzzed signal trade; covered elsewhere
        concrete = path
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            value = quote(data.draw(path_text), safe="")
            concrete = concrete[:start] + value + concrete[end + 1 :]
        kwargs: dict[str, Any] = {}
        if body_schema is not None:
            body = data.draw(_from_schema(body_schema, components) | _json)
            kwargs["content"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif method == "POST" and data.draw(st.booleans()):
            kwargs["content"] = data.draw(st.text(max_size=30))
        r = stack.client.request(method, concrete, **kwargs)
        assert r.status_code < 500, (method, concrete, kwargs, r.status_code, r.text)

    run()
    assert len(stack.sim.orders(prefix="sp-")) == 0


def test_follower_added_while_running_gets_a_session(make_stack: Any) -> None:
    from spreadpilot.domain.followers import Follower, GatewayEndpoint
    from spreadpilot.storage.followers import FollowersRepository

    stack = make_stack([FollowerSpec("alice", "DU0000001"), FollowerSpec("bob", "DU0000002")])
    repo = FollowersRepository(stack.db)
    repo.delete("bob")
    wait_for(lambda: "bob" not in stack.client.get("/health").json()["sessions"], 15)
    repo.add(
        Follower(
            _id="carol",
            name="carol",
            gateway=GatewayEndpoint(
                host="127.0.0.1", port=stack.sim.ports["DU0000002"], client_id=40
            ),
            account="DU0000002",
        )
    )
    wait_for(
        lambda: stack.client.get("/health").json()["sessions"].get("carol", {}).get("ready"), 15
    )
    assert stack.post_signal(**BODY, follower_id="carol").status_code == 202
