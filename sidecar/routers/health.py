"""``GET /health``: the process is alive; per-follower session state. No auth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sidecar.routers._deps import RuntimeDep

router = APIRouter(tags=["status"])


@router.get("/health")
async def health(runtime: RuntimeDep) -> dict[str, Any]:
    sessions = {
        fid: {"state": s.state, "connected": s.connected, "ready": s.ready}
        for fid, s in sorted(runtime.pool.sessions.items())
    }
    return {"status": "ok", "sessions": sessions}
