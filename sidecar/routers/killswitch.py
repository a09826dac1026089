"""The kill switch: ``/close/all``, ``/close/{follower_id}``, ``/halt``, ``/resume``.

``/close/all`` is declared before ``/close/{follower_id}`` so that "all" is
never taken for a follower id. These routes touch only the gateways and memory:
they work with MongoDB, PostgreSQL and Redis all down.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from spreadpilot.adapters.ib_broker import BrokerError
from spreadpilot.domain.alerts import Alert, AlertType
from spreadpilot.domain.followers import TradingMode

from sidecar.routers._deps import RuntimeDep, session_or_404
from sidecar.session_pool import Session

router = APIRouter(tags=["kill switch"])


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="kill switch", max_length=200)


class HaltBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    follower_id: str | None = Field(default=None, max_length=128, description="none = all")
    mode: Literal["halt", "reduce_only"] = "halt"
    reason: str = Field(default="operator halt", max_length=200)


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    follower_id: str | None = Field(default=None, max_length=128, description="none = all")
    reason: str = Field(default="operator resume", max_length=200)


async def _close(runtime: Any, session: Session, reason: str) -> dict[str, Any]:
    if not session.connected:
        return {"follower_id": session.follower_id, "error": "gateway not connected"}
    try:
        results = await runtime.liquidator.close_all(session, reason)
    except BrokerError as exc:
        return {"follower_id": session.follower_id, "error": exc.text}
    return {"follower_id": session.follower_id, "closed": [r.as_dict() for r in results]}


def _announce(runtime: Any, message: str, params: dict[str, Any], follower_id: str | None) -> None:
    runtime.alerts.publish(
        Alert.create(
            AlertType.KILL_SWITCH,
            None,
            message,
            params,
            runtime.clock.now(),
            follower_id=follower_id,
        )
    )


@router.post("/close/all")
async def close_all(runtime: RuntimeDep, body: CloseBody | None = None) -> dict[str, Any]:
    reason = body.reason if body else "kill switch"
    runtime.killswitch.set(TradingMode.REDUCE_ONLY, None, f"close all: {reason}")
    _announce(runtime, f"close all followers: {reason}", {"scope": "all", "reason": reason}, None)
    sessions = list(runtime.pool.sessions.values())
    results = await asyncio.gather(*(_close(runtime, s, reason) for s in sessions))
    return {"scope": "all", "mode": TradingMode.REDUCE_ONLY.value, "followers": list(results)}


@router.post("/close/{follower_id}")
async def close_follower(
    follower_id: str, runtime: RuntimeDep, body: CloseBody | None = None
) -> dict[str, Any]:
    session = session_or_404(runtime, follower_id)
    reason = body.reason if body else "kill switch"
    runtime.killswitch.set(TradingMode.REDUCE_ONLY, follower_id, f"close: {reason}")
    _announce(
        runtime,
        f"close follower {follower_id}: {reason}",
        {"scope": follower_id, "reason": reason},
        follower_id,
    )
    result = await _close(runtime, session, reason)
    return {"scope": follower_id, "mode": TradingMode.REDUCE_ONLY.value, **result}


@router.post("/halt")
async def halt(runtime: RuntimeDep, body: HaltBody | None = None) -> dict[str, Any]:
    body = body or HaltBody()
    if body.follower_id is not None:
        session_or_404(runtime, body.follower_id)
    mode = TradingMode.HALTED if body.mode == "halt" else TradingMode.REDUCE_ONLY
    runtime.killswitch.set(mode, body.follower_id, body.reason)
    _announce(
        runtime,
        f"{mode.value} {body.follower_id or 'all followers'}: {body.reason}",
        {"scope": body.follower_id or "all", "mode": mode.value, "reason": body.reason},
        body.follower_id,
    )
    return {"kill_switch": runtime.killswitch.snapshot()}


@router.post("/resume")
async def resume(runtime: RuntimeDep, body: ResumeBody | None = None) -> dict[str, Any]:
    body = body or ResumeBody()
    if body.follower_id is not None:
        session_or_404(runtime, body.follower_id)
    runtime.killswitch.set(TradingMode.ACTIVE, body.follower_id, body.reason)
    _announce(
        runtime,
        f"resume {body.follower_id or 'all followers'}: {body.reason}",
        {"scope": body.follower_id or "all", "mode": TradingMode.ACTIVE.value},
        body.follower_id,
    )
    return {"kill_switch": runtime.killswitch.snapshot()}
