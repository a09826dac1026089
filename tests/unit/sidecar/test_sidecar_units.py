"""Pure parts of the sidecar: auth, logs, kill-switch modes, margin rule, fill mapping."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.testclient import TestClient
from spreadpilot.adapters.ib_broker import FillRecord, MarginCheck
from spreadpilot.config import Settings
from spreadpilot.domain.alerts import Alert, AlertType
from spreadpilot.domain.followers import TradingMode

from sidecar.alerts import AsyncAlerts
from sidecar.app import SidecarDeps, create_app
from sidecar.auth import Authenticator
from sidecar.fills import to_execution_fill
from sidecar.liquidation import KillSwitch, spread_id_of
from sidecar.logs import JsonFormatter


def _creds(token: str, scheme: str = "Bearer") -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- auth -----------------------------------------------------------------------------


def test_static_token_accepted_and_others_refused() -> None:
    auth = Authenticator("s3cret-token")
    assert _run(auth(None, _creds("s3cret-token"))) == "static"  # type: ignore[arg-type]
    for bad in ("s3cret-tokeN", "", "s3cret-token ", "x" * 1000):
        with pytest.raises(HTTPException) as info:
            _run(auth(None, _creds(bad)))  # type: ignore[arg-type]
        assert getattr(info.value, "status_code", None) == 401
    with pytest.raises(HTTPException):
        _run(auth(None, None))  # type: ignore[arg-type]


def test_id_token_of_allowed_service_account_only() -> None:
    def verify(token: str) -> dict[str, Any]:
        if token == "a.b.good":
            return {"email": "fn@proj.iam.gserviceaccount.com", "email_verified": True}
        if token == "a.b.other":
            return {"email": "someone@else.com", "email_verified": True}
        raise ValueError("bad signature")

    auth = Authenticator(
        None,
        service_accounts=frozenset({"fn@proj.iam.gserviceaccount.com"}),
        verifier=verify,
    )
    assert _run(auth(None, _creds("a.b.good"))) == "fn@proj.iam.gserviceaccount.com"  # type: ignore[arg-type]
    for bad in ("a.b.other", "a.b.forged", "not-a-jwt"):
        with pytest.raises(HTTPException) as info:
            _run(auth(None, _creds(bad)))  # type: ignore[arg-type]
        assert getattr(info.value, "status_code", None) == 401


def test_app_routes_need_auth_health_does_not() -> None:
    settings = Settings(
        sidecar_token="tok-123", sidecar_allowed_service_accounts="fn@p.iam.gserviceaccount.com"
    )
    verifier_calls: list[str] = []

    def verify(token: str) -> dict[str, Any]:
        verifier_calls.append("x")
        return {"email": "fn@p.iam.gserviceaccount.com"}

    app = create_app(settings, SidecarDeps(configure_logs=False, id_token_verifier=verify))
    client = TestClient(app)  # no lifespan: nothing connects
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    # Past auth the runtime is absent (no lifespan) -> 503, which proves auth passed.
    ok = client.get("/status", headers={"Authorization": "Bearer tok-123"})
    assert ok.status_code == 503
    jwt = client.get("/status", headers={"Authorization": "Bearer h.p.s"})
    assert jwt.status_code == 503 and verifier_calls
    assert client.get("/health").status_code == 503  # open route, runtime not started


def test_secrets_are_resolved_at_start_up_and_an_unreadable_source_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from spreadpilot.secrets import SecretBackendError

    from sidecar.app import resolve_secrets

    env = Settings(sidecar_token="tok-123")
    assert resolve_secrets(env) is env  # env backend: the settings already hold them
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("VAULT_PATH_PREFIX", "spreadpilot")
    vault = Settings(
        secrets_backend="vault",
        vault_addr=f"http://127.0.0.1:{closed}",
        vault_token="root-not-printed",
        sidecar_token="env-token-never-used",
    )
    with pytest.raises(SecretBackendError) as info:
        create_app(vault, SidecarDeps(configure_logs=False))
    assert "SIDECAR_TOKEN" in str(info.value) and "root-not-printed" not in str(info.value)


# -- logs -------------------------------------------------------------------------------


def test_json_log_has_severity_and_extras() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    record.follower_id = "alice"
    out = json.loads(JsonFormatter().format(record))
    assert out["severity"] == "WARNING"
    assert out["message"] == "hello w"
    assert out["follower_id"] == "alice"


# -- kill switch --------------------------------------------------------------------------


def test_kill_switch_stricter_mode_wins_and_resume_all_clears() -> None:
    ks = KillSwitch(lambda: None)
    assert ks.mode_for("a") is TradingMode.ACTIVE
    ks.set(TradingMode.REDUCE_ONLY, "a", "r")
    ks.set(TradingMode.HALTED, None, "g")
    assert ks.mode_for("a") is TradingMode.HALTED
    assert ks.mode_for("b") is TradingMode.HALTED
    ks.set(TradingMode.ACTIVE, None, "resume")
    assert ks.mode_for("a") is TradingMode.ACTIVE
    ks.set(TradingMode.HALTED, "b", "x")
    assert ks.mode_for("b") is TradingMode.HALTED and ks.mode_for("a") is TradingMode.ACTIVE


def test_kill_switch_survives_a_store_that_hangs() -> None:
    class Hanging:
        async def load(self) -> dict[str, Any] | None:
            await asyncio.sleep(3600)
            return None

        async def save(self, state: dict[str, Any]) -> None:
            await asyncio.sleep(3600)

    async def scenario() -> float:
        ks = KillSwitch(lambda: Hanging())
        started = time.monotonic()
        ks.set(TradingMode.HALTED, None, "x")  # returns at once
        elapsed = time.monotonic() - started
        assert ks.mode_for("z") is TradingMode.HALTED
        return elapsed

    assert _run(scenario()) < 0.1


# -- margin rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("init_change", "available", "ewl_after", "init_after", "ok"),
    [
        (500.0, 1000.0, 9000.0, 600.0, True),
        (1500.0, 1000.0, 9000.0, 600.0, False),
        (500.0, 1000.0, 500.0, 600.0, False),
        (math.nan, 1000.0, 9000.0, 600.0, False),
        (500.0, math.nan, 9000.0, 600.0, False),
    ],
)
def test_margin_check_fails_closed(
    init_change: float, available: float, ewl_after: float, init_after: float, ok: bool
) -> None:
    check = MarginCheck(init_change, init_change, init_after, ewl_after, available, 10_000.0)
    assert check.sufficient is ok


# -- fills -----------------------------------------------------------------------------------


def _fill(**over: Any) -> FillRecord:
    base: dict[str, Any] = {
        "exec_id": "e1",
        "account": "DU1",
        "order_id": 5,
        "perm_id": 9,
        "order_ref": "sp-a-1",
        "con_id": 77,
        "symbol": "QQQ",
        "sec_type": "OPT",
        "right": "P",
        "strike": 480.0,
        "expiry": "20250115",
        "side": "SLD",
        "shares": 2.0,
        "price": 1.1,
        "time": datetime(2025, 1, 15, 20, 30, tzinfo=UTC),  # 15:30 New York
    }
    base.update(over)
    return FillRecord(**base)


def test_fill_mapping() -> None:
    row = to_execution_fill("alice", _fill())
    assert row is not None
    assert row.side == "SLD" and row.right == "P" and row.multiplier == 100
    assert str(row.trading_date) == "2025-01-15"
    assert str(row.price) == "1.1" and str(row.qty) == "2.0"
    assert to_execution_fill("alice", _fill(side="??")) is None
    assert to_execution_fill("alice", _fill(shares=0.0)) is None


def test_fill_time_is_the_gateways_execution_time() -> None:
    """A fill is booked at IB's execution time, not when ib_async received it."""
    from zoneinfo import ZoneInfo

    from ib_async import Contract, Execution
    from ib_async.objects import CommissionReport, Fill
    from spreadpilot.adapters.ib_broker import fill_time

    executed = datetime(2025, 1, 15, 15, 30, tzinfo=ZoneInfo("America/New_York"))
    arrived = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)  # wall clock of the receiving host

    def fill(exec_time: datetime | None, received: Any) -> Fill:
        execution = (
            Execution(execId="e1") if exec_time is None else Execution(execId="e1", time=exec_time)
        )
        return Fill(Contract(), execution, CommissionReport(), received)

    assert fill_time(fill(executed, arrived)) == executed
    naive = fill_time(fill(datetime(2025, 1, 15, 20, 30), arrived))
    assert naive == datetime(2025, 1, 15, 20, 30, tzinfo=UTC)
    # No execution time from IB (ib_async's default is the epoch): the arrival time.
    assert fill_time(fill(None, arrived)) == arrived
    before = datetime.now(UTC)
    assert fill_time(fill(None, None)) >= before  # nothing usable: now


def test_spread_id_is_readable_and_stable() -> None:
    assert spread_id_of("P", "20250115", 475.0, 480.0) == "P-20250115-475-480"
    assert spread_id_of("C", "20250115", 485.5, 480.0) == "C-20250115-485.5-480"


# -- alerts ------------------------------------------------------------------------------------


def test_alert_publish_never_waits_for_a_slow_publisher() -> None:
    class Slow:
        def __init__(self) -> None:
            self.got: list[str] = []

        def publish(self, alert: Alert) -> dict[str, bool]:
            time.sleep(0.3)
            self.got.append(alert.id)
            return {"slow": True}

    async def scenario() -> tuple[float, list[str]]:
        slow = Slow()
        alerts = AsyncAlerts(slow)
        alerts.start()
        started = time.monotonic()
        for i in range(5):
            alerts.publish(
                Alert.create(AlertType.KILL_SWITCH, None, "m", {}, datetime.now(UTC), id=f"a{i}")
            )
        elapsed = time.monotonic() - started
        await alerts.drain(timeout_s=5)
        await alerts.close()
        return elapsed, slow.got

    elapsed, got = _run(scenario())
    assert elapsed < 0.05
    assert got == [f"a{i}" for i in range(5)]
