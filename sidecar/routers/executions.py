"""``GET /executions/{id}``: one execution record."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from sidecar.routers._deps import RuntimeDep
from sidecar.stores_impl import public_view

router = APIRouter(tags=["trading"])


@router.get("/executions/{execution_id}")
async def get_execution(execution_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    record = await runtime.store.get(execution_id)
    if record is None:
        raise HTTPException(status_code=404, detail=f"unknown execution {execution_id!r}")
    return public_view(record)
