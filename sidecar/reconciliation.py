"""Reconciliation: after every (re)connect, before any new order for that follower.

IB is the truth about orders and fills; our execution records are the truth
about intent. After a restart or a dropped session the two are matched by
``orderRef``:

* IB's executions (all of today's) are written to ``fills`` (idempotent);
* every unfinished execution of the follower is resumed by the executor,
  which adopts its order by orderRef, settles it from executions if it
  finished meanwhile, and never places an order for a record that already
  holds an order id: if IB has no trace of it (whether or not the record got
  as far as "sent"), the execution fails with a CRITICAL alert for a person;
* an order of ours (``sp-`` prefix) that no unfinished record explains is
  reported as CRITICAL for a person; it is never touched automatically.

If the execution store is down this raises, the session stays "not ready",
and the pool retries: no new entry is sent while intent is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from spreadpilot.domain.alerts import Alert, AlertType

from sidecar.executor import AlertSink, Executor
from sidecar.fills import FillSink
from sidecar.session_pool import Session
from sidecar.store import ExecutionStore

log = logging.getLogger(__name__)

ENTRY_PREFIX = "sp-"


class Reconciler:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        executor: Executor,
        fills: FillSink,
        alerts: AlertSink,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.executor = executor
        self.fills = fills
        self.alerts = alerts
        self.now = now
        self.last_run: dict[str, str] = {}

    async def __call__(self, session: Session) -> None:
        broker = session.broker
        follower_id = session.follower_id
        await broker.refresh_open_orders()
        executions = await broker.executions()
        for f in executions:
            self.fills.add_fill(follower_id, f)
        for c in broker.known_commissions():
            self.fills.add_commission(c)

        unfinished = await self.store.find_unfinished(follower_id)
        explained = {r["order_ref"] for r in unfinished}
        for record in unfinished:
            log.info(
                "resuming unfinished execution",
                extra={
                    "execution_id": record["_id"],
                    "follower_id": follower_id,
                    "state": record["state"],
                },
            )
            self.executor.spawn(record["_id"], follower_id)

        for trade in broker.open_trades():
            ref = trade.order.orderRef or ""
            if not ref.startswith(ENTRY_PREFIX) or ref in explained:
                continue
            found = await self.store.find_by_order_ref(ref)
            if found is not None and self.executor.running(found["_id"]):
                continue
            self.alerts.publish(
                Alert.create(
                    AlertType.LEGGED_POSITION,
                    None,
                    f"open order {ref} has no unfinished execution; left untouched, check it",
                    {
                        "order_ref": ref,
                        "order_id": trade.order.orderId,
                        "execution_state": found["state"] if found else None,
                    },
                    self.now(),
                    follower_id=follower_id,
                    id=f"{ref}:unexplained:{session.connects}",
                )
            )
        self.last_run[follower_id] = self.now().isoformat()
