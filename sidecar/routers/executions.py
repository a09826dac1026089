"""``GET /executions/{id}``: one execution record."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException

from sidecar.routers._deps import RuntimeDep
from sidecar.stores_impl import public_view

router = APIRouter(tags=["trading"])


#: What an execution id (an orderRef, ``spreadpilot.domain.execution.order_ref_for``)
#: can look like, with room to spare; anything else cannot name an execution.
EXECUTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@router.get("/executions/{execution_id}")
async def get_execution(execution_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    # Answered here, not by the store: a control character (a NUL, say) is
    # not a lookup the database can even run, and "unknown" is the truth.
    if not EXECUTION_ID.fullmatch(execution_id):
        raise HTTPException(status_code=404, detail=f"unknown execution {execution_id!r}")
    record = await runtime.store.get(execution_id)
    if record is None:
        raise HTTPException(status_code=404, detail=f"unknown execution {execution_id!r}")
    return public_view(record)
