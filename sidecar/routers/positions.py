"""``GET /positions[/{follower_id}]``, ``POST /liquidate`` and ``POST /flatten``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from spreadpilot.adapters.ib_broker import BrokerError

from sidecar.routers._deps import RuntimeDep, connected_or_503, session_or_404

router = APIRouter(tags=["positions"])


@router.get("/positions")
async def all_positions(runtime: RuntimeDep) -> dict[str, Any]:
    sessions = list(runtime.pool.sessions.values())

    async def one(session: Any) -> dict[str, Any]:
        if not session.connected:
            return {"follower_id": session.follower_id, "error": "gateway not connected"}
        try:
            return (await runtime.liquidator.positions(session)).as_dict()
        except BrokerError as exc:
            return {"follower_id": session.follower_id, "error": exc.text}

    results = await asyncio.gather(*(one(s) for s in sessions))
    return {"followers": list(results)}


@router.get("/positions/{follower_id}")
async def follower_positions(follower_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    session = connected_or_503(session_or_404(runtime, follower_id))
    try:
        return (await runtime.liquidator.positions(session)).as_dict()
    except BrokerError as exc:
        raise HTTPException(status_code=503, detail=f"broker: {exc.text}") from None


class LiquidateBody(BaseModel):
    """Close one spread with one combo market order (the TV monitor's CRITICAL action)."""

    model_config = ConfigDict(extra="forbid")

    follower_id: str = Field(max_length=128)
    spread_id: str = Field(
        max_length=128, description="as listed by GET /positions, e.g. P-20250117-440-445"
    )
    qty: int | None = Field(default=None, ge=1, le=10_000, description="default: all of it")
    reason: str = Field(default="TV_CRITICAL", max_length=200)


@router.post("/liquidate")
async def liquidate(body: LiquidateBody, runtime: RuntimeDep) -> dict[str, Any]:
    session = connected_or_503(session_or_404(runtime, body.follower_id))
    try:
        result = await runtime.liquidator.liquidate(session, body.spread_id, body.qty, body.reason)
    except BrokerError as exc:
        raise HTTPException(status_code=503, detail=f"broker: {exc.text}") from None
    if result.status == "NOT_FOUND":
        raise HTTPException(status_code=404, detail=f"no open spread {body.spread_id!r}")
    if result.status == "REFUSED":
        raise HTTPException(status_code=409, detail=f"liquidation refused: {result.error}")
    return result.as_dict()


class FlattenBody(BaseModel):
    """Close one unpaired position (an orphan of ``GET /positions``) with one market order."""

    model_config = ConfigDict(extra="forbid")

    follower_id: str = Field(max_length=128)
    kind: Literal["STOCK_POSITION", "SHORT_LEG_MISSING", "NAKED_SHORT"] = Field(
        description="the orphan's kind as GET /positions lists it"
    )
    con_id: int = Field(ge=1, description="the orphan's con_id")
    qty: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="default: all of the unpaired quantity (never more)",
    )
    reason: str = Field(default="ASSIGNMENT", max_length=200)


@router.post("/flatten")
async def flatten(body: FlattenBody, runtime: RuntimeDep) -> dict[str, Any]:
    """SELL stock/long options or BUY back short ones, only ever reducing the position.

    404 when that unpaired position is not (or no longer) there; 409 when the
    follower is halted, or when a flatten of it already filled today.
    """
    session = connected_or_503(session_or_404(runtime, body.follower_id))
    try:
        result = await runtime.liquidator.flatten(
            session, body.kind, body.con_id, body.qty, body.reason
        )
    except BrokerError as exc:
        raise HTTPException(status_code=503, detail=f"broker: {exc.text}") from None
    if result.status == "NOT_FOUND":
        raise HTTPException(
            status_code=404, detail=f"no unpaired {body.kind} position with conId {body.con_id}"
        )
    if result.status == "REFUSED":
        raise HTTPException(status_code=409, detail=f"flatten refused: {result.error}")
    return result.as_dict()
