"""The concrete stores behind ``sidecar.store``: the shared repositories, off the loop.

pymongo and pg8000 are synchronous. Each call runs in a worker thread of the
stores' own pools, so that a slow or dead database stalls only the caller,
never the event loop that carries every follower's ladder and the kill
switch. They are not asyncio's default pool, which everything else in the
process shares: the writes an order waits for get threads of their own, and
bookkeeping writes another, smaller pool (see ``BOOKKEEPING_THREADS``).
Driver errors become ``StoreUnavailable``.

Executions are handed to the executor as flat dicts: the repository's typed
fields plus the free-form ``data`` merged in, so the executor can keep its
step outputs (ladder, quotes, margin figures) next to the state they belong to.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo.database import Database
from pymongo.errors import PyMongoError
from spreadpilot.adapters.mongo import Document, to_bson, with_codec
from spreadpilot.domain.execution import ExecutionState
from spreadpilot.domain.followers import Follower
from spreadpilot.domain.signals import Signal
from spreadpilot.storage.executions import (
    AdvancePlan,
    ExecutionEvent,
    ExecutionRecord,
    ExecutionsRepository,
    plan_advance,
)
from spreadpilot.storage.followers import FollowersRepository

from sidecar.store import Record, StaleRecord, Step, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Executor keys that map onto the repository's typed fields.
_TYPED = {
    "qty": "qty",
    "order_id": "order_id",
    "perm_id": "perm_id",
    "filled_qty": "filled_qty",
    "limit": "limit_price",
    "fill_price": "fill_price",
    "rung": "rung",
    "error": "error",
}
_IGNORED = frozenset({"history", "updated_at", "_id", "state", "signal_id", "follower_id"})
# Keys of the flat record that are the repository's own, not step outputs:
# the identity a write never changes, and what every write manages itself.
_IDENTITY = frozenset(
    {"_id", "signal_id", "follower_id", "trading_date", "order_ref", "signal", "created_at"}
)
_MANAGED = _IDENTITY | {"version", "events"}


#: Threads for store calls that something waits on before it may act (the
#: record of a signal, the reservation before an order). Each blocks on one
#: database round trip at a time. Measured on two cores with fifty followers
#: (median of the last entry order): 8 threads 0.48 s, 32 threads 0.51 s, the
#: default pool (6, shared with everything else) 0.68 s; past the database's
#: own parallelism more threads only contend for the interpreter lock.
STORE_THREADS = 8
#: Threads for bookkeeping writes that gate nothing (the "sent" mark after an
#: order went out). Few on purpose: in a burst of fifty entries they wait
#: their turn instead of taking the database from the reservations that
#: stand between the next followers and their orders.
BOOKKEEPING_THREADS = 2
_urgent_pool = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="store")
_bookkeeping_pool = ThreadPoolExecutor(
    max_workers=BOOKKEEPING_THREADS, thread_name_prefix="store-bookkeeping"
)


async def _off_loop(fn: Callable[[], T], what: str, *, urgent: bool = True) -> T:
    context = contextvars.copy_context()
    pool = _urgent_pool if urgent else _bookkeeping_pool
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, context.run, fn)
    except PyMongoError as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}") from exc


def flatten(rec: ExecutionRecord) -> Record:
    """Repository record -> the executor's flat dict."""
    out: Record = dict(rec.data)
    out.update(
        {
            "_id": rec.id,
            "signal_id": rec.signal_id,
            "follower_id": rec.follower_id,
            "trading_date": rec.trading_date.isoformat(),
            "order_ref": rec.order_ref,
            "state": rec.state.value,
            "version": rec.version,
            "signal": rec.signal.model_dump(mode="json") if rec.signal else None,
            "qty": rec.qty,
            "order_id": rec.order_id,
            "perm_id": rec.perm_id,
            "filled_qty": rec.filled_qty,
            "limit": rec.limit_price,
            "fill_price": rec.fill_price,
            "rung": rec.rung,
            "error": rec.error,
            "created_at": rec.created_at,
            "updated_at": rec.updated_at,
            "events": [e.model_dump(mode="json") for e in rec.events],
        }
    )
    return out


def public_view(record: Record) -> Record:
    """A record as the API shows it (JSON-safe, no internal bookkeeping)."""
    out = {k: v for k, v in record.items() if k not in ("version",)}
    out["execution_id"] = out.pop("_id")
    for key, value in list(out.items()):
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat()
    return out


def _json_data(value: Any) -> Any:
    bson = to_bson(value)
    if isinstance(bson, datetime):
        return bson.isoformat()
    if isinstance(bson, dict):
        return {k: _json_data(v) for k, v in bson.items()}
    if isinstance(bson, list):
        return [_json_data(v) for v in bson]
    return bson


def _event_detail(fields: Record) -> Record:
    """What a history entry repeats of a step's fields: where the ladder stood."""
    return {k: _json_data(v) for k, v in fields.items() if k in ("rung", "limit", "filled_qty")}


def _advanced(current: Record, plan: AdvancePlan, target: ExecutionState, at: datetime) -> Record:
    """The record as ``advance`` just wrote it, built here instead of read back.

    The compare-and-set matched ``current`` (its state and version), so the
    stored record is exactly ``current`` with ``plan`` applied: the fields as
    the repository validated and stored them, the new state, the next
    version, the appended events. ``flatten`` of a read gives the same dict.
    """
    stored = dict(plan.fields)
    out: Record = {k: v for k, v in current.items() if k in _IDENTITY or k in _TYPED}
    out.update(stored.pop("data", {}))
    for key, name in _TYPED.items():
        if name in stored:
            out[key] = stored[name]
    events = [e.model_copy(update={"at": _as_stored(e.at)}) for e in plan.events]
    out.update(
        {
            "state": target.value,
            "version": int(current["version"]) + 1,
            "updated_at": _as_stored(at),
            "events": [*current["events"], *(e.model_dump(mode="json") for e in events)],
        }
    )
    return out


def _as_stored(moment: datetime) -> datetime:
    """A time as a BSON date keeps it and a read returns it: UTC, whole milliseconds."""
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


class MongoExecutionStore:
    """``ExecutionStore`` over the shared ``ExecutionsRepository``."""

    def __init__(self, db: Database[Any]) -> None:
        self._repo = ExecutionsRepository(db)

    async def ensure_indexes(self) -> None:
        await _off_loop(self._repo.ensure_indexes, "ensure_indexes")

    async def create_many(
        self, signal: Signal, follower_ids: Sequence[str], at: datetime
    ) -> list[tuple[bool, Record]]:
        # At the time as stored, so the records handed back equal a read.
        records = [ExecutionRecord.new(signal, f, _as_stored(at)) for f in follower_ids]
        outcomes = await _off_loop(
            lambda: self._repo.create_many_if_absent(records), "create_many_if_absent"
        )
        return [(created, flatten(stored)) for stored, created in outcomes]

    async def get(self, execution_id: str) -> Record | None:
        rec = await _off_loop(lambda: self._repo.get(execution_id), "get")
        return None if rec is None else flatten(rec)

    async def advance(
        self,
        current: Record,
        target: ExecutionState,
        fields: Record,
        at: datetime,
        via: Sequence[Step] = (),
        *,
        urgent: bool = True,
    ) -> Record:
        """Compare-and-set on state *and* version; ``fields`` merge into the record."""
        if via:
            fields = {**{k: v for step in via for k, v in step.fields.items()}, **fields}
        typed: dict[str, Any] = {}
        data = {
            k: v
            for k, v in current.items()
            if k not in _TYPED and k not in _IGNORED and k not in _MANAGED
        }
        for key, value in fields.items():
            if key in _TYPED:
                typed[_TYPED[key]] = value
            elif key not in _IGNORED:
                data[key] = _json_data(value)
        typed["data"] = data
        expected = ExecutionState(current["state"])
        through: list[ExecutionEvent] = []
        before = expected
        for step in via:
            through.append(
                ExecutionEvent(
                    at=step.at,
                    kind="transition",
                    state=step.state,
                    detail={"from": before.value, **_event_detail(step.fields)},
                )
            )
            before = step.state
        kind = "transition" if target is not before else "update"
        event = ExecutionEvent(
            at=at, kind=kind, state=target, detail={"from": before.value, **_event_detail(fields)}
        )
        version = int(current["version"])

        def write() -> tuple[AdvancePlan, bool]:
            # Validating and encoding the record's data is CPU work: done here,
            # in the store's thread, not on the loop that runs every ladder.
            plan = plan_advance(
                current["_id"], expected, target, typed, at, event, version, through
            )
            return plan, self._repo.apply_blind(plan) is not None

        plan, applied = await _off_loop(write, "advance", urgent=urgent)
        if not applied:
            raise StaleRecord(current["_id"])
        return _advanced(current, plan, target, at)

    async def find_unfinished(self, follower_id: str | None = None) -> list[Record]:
        recs = await _off_loop(lambda: self._repo.find_unfinished(follower_id), "find_unfinished")
        return [flatten(r) for r in recs]

    async def find_by_order_ref(self, order_ref: str) -> Record | None:
        rec = await _off_loop(lambda: self._repo.find_by_order_ref(order_ref), "find_by_ref")
        return None if rec is None else flatten(rec)

    async def list_for_signal(self, signal_id: str) -> list[Record]:
        recs = await _off_loop(lambda: self._repo.list_for_signal(signal_id), "list_for_signal")
        return [flatten(r) for r in recs]


class MongoFollowerSource:
    """Follower records, read off the loop."""

    def __init__(self, db: Database[Any]) -> None:
        self._repo = FollowersRepository(db)

    async def list_all(self) -> list[Follower]:
        return await _off_loop(self._repo.list_all, "followers.list_all")


class MongoModeStore:
    """The kill-switch modes, persisted best-effort in one document."""

    def __init__(self, db: Database[Any]) -> None:
        self._col = with_codec(db)["kill_switch"]

    async def load(self) -> Record | None:
        doc: Document | None = await _off_loop(
            lambda: self._col.find_one({"_id": "modes"}), "kill_switch.load"
        )
        return doc

    async def save(self, state: Record) -> None:
        doc = {"_id": "modes", **to_bson(state)}
        await _off_loop(
            lambda: self._col.replace_one({"_id": "modes"}, doc, upsert=True), "kill_switch.save"
        )
