"""``POST /trade/signal``: the seed's manual body; 202 with one execution per follower."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from spreadpilot.clock import now_new_york
from spreadpilot.domain.signals import InvalidSignal, limits_problem, manual_signal

from sidecar.routers._deps import RuntimeDep, session_or_404

router = APIRouter(tags=["trading"])


class TradeSignalBody(BaseModel):
    """The seed's body. Values are checked by the domain parser, which names the problem."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(
        description="vertical_spread | bull_put | bear_call | Long | Short", max_length=64
    )
    qty_per_leg: int | float | str
    strike_long: float | int | str
    strike_short: float | int | str
    follower_id: str | None = Field(default=None, max_length=128)
    expiry: str | None = Field(default=None, max_length=32, description="YYYY-MM-DD; default today")
    signal_id: str | None = Field(default=None, max_length=200)
    ticker: str | None = Field(default=None, max_length=16)


class ExecutionRef(BaseModel):
    execution_id: str
    follower_id: str
    state: str
    created: bool


class TradeSignalReply(BaseModel):
    signal_id: str
    strategy: str
    executions: list[ExecutionRef]


@router.post("/trade/signal", status_code=202, response_model=TradeSignalReply)
async def trade_signal(body: TradeSignalBody, runtime: RuntimeDep) -> dict[str, Any]:
    raw = body.model_dump(exclude_none=True)
    today = now_new_york(runtime.clock).date()
    limits = runtime.settings.signal_limits()
    try:
        signal = manual_signal(raw, today=today, limits=limits)
    except InvalidSignal as exc:
        raise HTTPException(status_code=422, detail=exc.reason) from None
    # Defence in depth: the sidecar is the last gate before the broker, so it
    # re-checks the built signal with the very check dispatch_signal applies to
    # Pub/Sub messages, whatever the parser above lets through now or later.
    problem = limits_problem(signal, limits)
    if problem is not None:
        raise HTTPException(status_code=422, detail=problem)

    if body.follower_id is not None:
        session = session_or_404(runtime, body.follower_id)
        if not session.follower.enabled:
            raise HTTPException(status_code=409, detail=f"follower {body.follower_id} is disabled")
        targets = [session.follower]
    else:
        targets = [f for f in runtime.pool.followers() if f.enabled]

    # Every follower's record in one write: each is its own document and its
    # own ladder (SPEC 1), and one insert after the other the fiftieth
    # follower's order waited for forty-nine. Each execution starts as soon as
    # the write returns. A store that fails it fails the request (503, the
    # caller retries; records the write made are found again, not doubled).
    outcomes = await runtime.executor.submit_many(signal, targets)
    executions = [
        {
            "execution_id": outcome["_id"],
            "follower_id": follower.id,
            "state": outcome["state"],
            "created": outcome["created"],
        }
        for follower, outcome in zip(targets, outcomes, strict=True)
    ]
    return {
        "signal_id": signal.signal_id,
        "strategy": signal.strategy.value,
        "executions": executions,
    }
