"""``GET /status``: what an operator needs at a glance."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter

from sidecar.routers._deps import RuntimeDep
from sidecar.stores_impl import public_view

router = APIRouter(tags=["status"])


@router.get("/status")
async def status(runtime: RuntimeDep) -> dict[str, Any]:
    sessions = await asyncio.gather(
        *(runtime.pool.health(s) for s in runtime.pool.sessions.values())
    )
    working: list[dict[str, Any]] | str
    try:
        records = await asyncio.wait_for(runtime.store.find_unfinished(None), 5.0)
        working = [public_view(r) for r in records]
    except Exception as exc:
        working = f"unavailable: {type(exc).__name__}"
    dead: dict[str, Any] | str
    try:
        dead = await asyncio.wait_for(asyncio.to_thread(_dead_letters, runtime), 5.0)
    except Exception as exc:
        dead = f"unavailable: {type(exc).__name__}"
    publisher: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):
        publisher = [s.__dict__ for s in runtime.publisher.status()]  # type: ignore[attr-defined]
    return {
        "followers": [
            {
                "follower_id": f.id,
                "enabled": f.enabled,
                "state": f.state.value,
                "mode": runtime.killswitch.mode_for(f.id).value,
            }
            for f in runtime.pool.followers()
        ],
        "followers_error": runtime.followers_error,
        "sessions": list(sessions),
        "kill_switch": runtime.killswitch.snapshot(),
        "last_signal": runtime.executor.last_signal,
        "working_executions": working,
        "running_tasks": runtime.executor.working_count(),
        "dead_letter_alerts": dead,
        "alert_sinks": publisher,
        "fills": {"pending": runtime.fills.pending, "last_error": runtime.fills.last_error},
        "reconciled_at": runtime.reconciler.last_run,
        "clock": runtime.clock.now().isoformat(),
    }


def _dead_letters(runtime: Any) -> dict[str, Any]:
    from spreadpilot.storage.alerts import AlertsRepository

    repo = AlertsRepository(runtime.db)
    letters = repo.list_dead_letters(20)
    return {
        "count": repo.count_dead_letters(),
        "recent": [getattr(d, "__dict__", str(d)) for d in letters],
    }
