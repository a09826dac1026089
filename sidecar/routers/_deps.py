"""Shared router dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

if TYPE_CHECKING:
    from sidecar.app import Runtime
    from sidecar.session_pool import Session


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status_code=503, detail="sidecar is starting")
    return runtime


RuntimeDep = Annotated["Runtime", Depends(get_runtime)]


def session_or_404(runtime: Runtime, follower_id: str) -> Session:
    session = runtime.pool.get(follower_id)
    if session is None:
        raise HTTPException(status_code=404, detail=f"unknown follower {follower_id!r}")
    return session


def connected_or_503(session: Session) -> Session:
    if not session.connected:
        raise HTTPException(
            status_code=503,
            detail=f"gateway of {session.follower_id} not connected: {session.last_error}",
        )
    return session
