"""The ``executions`` collection: one record per (signal, follower), the exactly-once anchor.

Why it is shaped this way (SPEC section 3, "written before and after every
step"):
- a unique index on (signal_id, follower_id) makes ``create_if_absent`` (and
  its batch form ``create_many_if_absent``) the single gate: however many
  deliveries, retries or workers race, one record is created and everyone
  else gets that same record back;
- ``advance`` is a compare-and-set on the state (and optionally the version),
  so two workers can never both move the same execution forward, and the
  domain transition table is enforced on every write;
- ``events`` is an append-only history (ladder rungs, fills, errors) pushed in
  the same atomic update as the state change it belongs to.
Only single-document atomic operations are used: FerretDB and MongoDB agree
on those, and no multi-document transaction is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from spreadpilot.adapters.mongo import Document, to_bson, with_codec
from spreadpilot.domain.execution import (
    TERMINAL_STATES,
    ExecutionState,
    order_ref_for,
    transition,
)
from spreadpilot.domain.signals import Signal

COLLECTION = "executions"


class ExecutionEvent(BaseModel):
    """One entry of an execution's history."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    at: datetime
    kind: str = Field(min_length=1, description="transition, rung, fill, error, reconcile, ...")
    state: ExecutionState | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ExecutionRecord(BaseModel):
    """The stored state of one signal executed for one follower.

    ``id`` is deterministic (the orderRef of the pair), so a restarted sidecar
    that knows the signal and follower can find the record without a query.
    Step outputs (quotes, margin figures, fill prices) live in named fields or
    in ``data``; the full timeline is ``events``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str = Field(alias="_id", min_length=1)
    signal_id: str = Field(min_length=1)
    follower_id: str = Field(min_length=1)
    trading_date: date
    order_ref: str = Field(min_length=1, max_length=64)
    state: ExecutionState = ExecutionState.RECEIVED
    version: int = 0
    signal: Signal | None = None
    qty: int | None = None
    order_id: int | None = None
    perm_id: int | None = None
    filled_qty: int = 0
    limit_price: float | None = None
    fill_price: float | None = None
    rung: int | None = None
    error: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    events: list[ExecutionEvent] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def new(cls, signal: Signal, follower_id: str, at: datetime, **fields: Any) -> ExecutionRecord:
        """A RECEIVED record for (signal, follower) with the deterministic id/orderRef."""
        ref = order_ref_for(signal.signal_id, follower_id)
        first = ExecutionEvent(at=at, kind="received", state=ExecutionState.RECEIVED)
        return cls(
            _id=ref,
            signal_id=signal.signal_id,
            follower_id=follower_id,
            trading_date=signal.trading_date,
            order_ref=ref,
            signal=signal,
            events=[first],
            created_at=at,
            updated_at=at,
            **fields,
        )

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


# Fields ``advance`` may set; identity, state, version and history are managed here.
_MANAGED = frozenset(
    {"id", "_id", "signal_id", "follower_id", "trading_date", "order_ref", "state"}
    | {"version", "events", "created_at", "updated_at"}
)
SETTABLE_FIELDS = frozenset(ExecutionRecord.model_fields) - _MANAGED


class StaleExecution(RuntimeError):
    """Raised by ``advance_or_raise`` when another worker moved the record first."""

    def __init__(self, execution_id: str, expected: ExecutionState) -> None:
        super().__init__(f"execution {execution_id} is no longer {expected.value}")
        self.execution_id = execution_id
        self.expected = expected


def _to_record(doc: Document) -> ExecutionRecord:
    return ExecutionRecord.model_validate(doc)


_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(ExecutionRecord.model_fields[name].annotation or Any)
    for name in SETTABLE_FIELDS
}


def _check_fields(fields: Mapping[str, Any]) -> Document:
    """Validate ``fields`` against the record's types and return them BSON-ready."""
    return {name: to_bson(v) for name, v in _validated_fields(fields).items()}


def _validated_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` checked against the record's types, as the record would hold them."""
    bad = sorted(k for k in fields if k not in SETTABLE_FIELDS)
    if bad:
        raise ValueError(f"execution fields not settable: {', '.join(bad)}")
    return {name: _ADAPTERS[name].validate_python(v) for name, v in fields.items()}


@dataclass(frozen=True)
class AdvancePlan:
    """One checked compare-and-set: its filter, its update, the events it appends.

    ``fields`` are the values it sets as the record holds them (validated),
    so a caller that applies it blind can tell what the record now is.
    """

    query: Document
    update: Document
    events: tuple[ExecutionEvent, ...]
    fields: Mapping[str, Any]


def plan_advance(
    execution_id: str,
    expected_state: ExecutionState,
    new_state: ExecutionState,
    fields: Mapping[str, Any] | None,
    at: datetime,
    event: ExecutionEvent | None,
    expected_version: int | None,
    through: Sequence[ExecutionEvent],
) -> AdvancePlan:
    """The filter and update of one compare-and-set, and the events it appends.

    Checks every hop against the transition table first: an illegal
    transition raises before anything is written.
    """
    previous = expected_state
    for step in through:
        if step.state is None:
            raise ValueError("a step taken on the way must name the state it reached")
        transition(previous, step.state)
        previous = step.state
    transition(previous, new_state)
    validated = _validated_fields(fields or {})
    updates = {name: to_bson(v) for name, v in validated.items()}
    pushed = event or ExecutionEvent(
        at=at,
        kind="transition",
        state=new_state,
        detail={"from": previous.value},
    )
    if pushed.state is None:
        pushed = pushed.model_copy(update={"state": new_state})
    events = [*through, pushed]
    query: Document = {"_id": execution_id, "state": expected_state.value}
    if expected_version is not None:
        query["version"] = expected_version
    update: Document = {
        "$set": {**updates, "state": new_state.value, "updated_at": to_bson(at)},
        "$inc": {"version": 1},
        "$push": {"events": {"$each": [to_bson(e) for e in events]}},
    }
    return AdvancePlan(query, update, tuple(events), validated)


class ExecutionsRepository:
    """Race-safe creation and compare-and-set advancement of execution records."""

    def __init__(self, db: Database[Any]) -> None:
        self._col: Collection[Document] = with_codec(db)[COLLECTION]

    def ensure_indexes(self) -> None:
        """Idempotent. The unique pair index is what makes creation exactly-once."""
        self._col.create_index(
            [("signal_id", ASCENDING), ("follower_id", ASCENDING)],
            unique=True,
            name="signal_follower_unique",
        )
        self._col.create_index([("order_ref", ASCENDING)], name="order_ref")
        self._col.create_index([("state", ASCENDING)], name="state")
        self._col.create_index(
            [("follower_id", ASCENDING), ("trading_date", ASCENDING)], name="follower_date"
        )

    def create_if_absent(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        """Insert ``record`` unless (signal_id, follower_id) exists.

        Returns (the stored record, True) for the one caller that created it,
        and (the existing record, False) for everyone else.
        """
        doc: Document = to_bson(record.model_dump(by_alias=True))
        try:
            self._col.insert_one(doc)
            return record, True
        except DuplicateKeyError:
            existing = self._col.find_one(
                {"signal_id": record.signal_id, "follower_id": record.follower_id}
            )
            if existing is None:  # same _id but another pair: a real conflict
                existing = self._col.find_one({"_id": record.id})
            if existing is None:
                raise
            return _to_record(existing), False

    def create_many_if_absent(
        self, records: Sequence[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        """``create_if_absent`` for many records in one round trip, answers in order.

        Why: one signal makes a record per follower, and fifty inserts one
        after the other (or fifty at once, queued on the driver's threads)
        delay the last follower's order by as many database round trips. An
        unordered bulk insert lets every new record in, and the unique index
        still refuses each pair that exists; only those are read back. Any
        other write error raises: nothing is reported created unless it was.
        """
        if not records:
            return []
        docs: list[Document] = [to_bson(r.model_dump(by_alias=True)) for r in records]
        try:
            self._col.insert_many(docs, ordered=False)
            return [(r, True) for r in records]
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
                raise
            duplicates = {int(e["index"]) for e in errors}
        existing = self._existing([records[i] for i in duplicates])
        return [
            (existing[(r.signal_id, r.follower_id)], False) if i in duplicates else (r, True)
            for i, r in enumerate(records)
        ]

    def _existing(
        self, refused: Sequence[ExecutionRecord]
    ) -> dict[tuple[str, str], ExecutionRecord]:
        """The stored records of the pairs the unique index refused, one query per signal."""
        stored: dict[tuple[str, str], ExecutionRecord] = {}
        for signal_id in sorted({r.signal_id for r in refused}):
            followers = sorted({r.follower_id for r in refused if r.signal_id == signal_id})
            for doc in self._col.find({"signal_id": signal_id, "follower_id": {"$in": followers}}):
                rec = _to_record(doc)
                stored[(rec.signal_id, rec.follower_id)] = rec
        for r in refused:
            if (r.signal_id, r.follower_id) not in stored:
                # The id (the pair's orderRef) is taken by another pair: refuse
                # rather than hand back someone else's execution.
                raise DuplicateKeyError(f"execution id {r.id} is taken by another pair", 11000)
        return stored

    def get(self, execution_id: str) -> ExecutionRecord | None:
        """The record by id, or None."""
        doc = self._col.find_one({"_id": execution_id})
        return None if doc is None else _to_record(doc)

    def find(self, signal_id: str, follower_id: str) -> ExecutionRecord | None:
        """The record of (signal, follower), or None."""
        doc = self._col.find_one({"signal_id": signal_id, "follower_id": follower_id})
        return None if doc is None else _to_record(doc)

    def find_by_order_ref(self, order_ref: str) -> ExecutionRecord | None:
        """The record whose IB ``orderRef`` this is (restart reconciliation)."""
        doc = self._col.find_one({"order_ref": order_ref})
        return None if doc is None else _to_record(doc)

    def find_unfinished(self, follower_id: str | None = None) -> list[ExecutionRecord]:
        """Records not in a terminal state: what a restarted sidecar must reconcile."""
        query: Document = {"state": {"$nin": sorted(s.value for s in TERMINAL_STATES)}}
        if follower_id is not None:
            query["follower_id"] = follower_id
        return [_to_record(d) for d in self._col.find(query).sort("created_at", ASCENDING)]

    def list_for_signal(self, signal_id: str) -> list[ExecutionRecord]:
        """Every follower's record of one signal."""
        cursor = self._col.find({"signal_id": signal_id}).sort("follower_id", ASCENDING)
        return [_to_record(d) for d in cursor]

    def list_for_date(
        self, trading_date: date, follower_id: str | None = None
    ) -> list[ExecutionRecord]:
        """Records of one trading date (optionally one follower)."""
        query: Document = {"trading_date": trading_date.isoformat()}
        if follower_id is not None:
            query["follower_id"] = follower_id
        return [_to_record(d) for d in self._col.find(query).sort("created_at", ASCENDING)]

    def advance(
        self,
        execution_id: str,
        expected_state: ExecutionState,
        new_state: ExecutionState,
        fields: Mapping[str, Any] | None = None,
        *,
        at: datetime,
        event: ExecutionEvent | None = None,
        expected_version: int | None = None,
        through: Sequence[ExecutionEvent] = (),
    ) -> ExecutionRecord | None:
        """Compare-and-set: move from ``expected_state`` to ``new_state`` and set ``fields``.

        Returns the updated record, or None when the record is not (any more)
        in ``expected_state`` (or at ``expected_version``): another worker got
        there first and this one must re-read instead of acting. An illegal
        transition raises ``IllegalTransition`` before anything is written. A
        transition event is appended (``event`` overrides its kind/detail).

        ``through`` are steps already taken on the way (each event names the
        state it reached, at its own time): every hop is checked against the
        transition table and every event is appended, in one atomic write.
        Why: the steps before an order only read from the broker, and a write
        each would put several database round trips between a signal and its
        order; one write that records them all, before the order is sent,
        keeps the history and the exactly-once guard.
        """
        plan = plan_advance(
            execution_id, expected_state, new_state, fields, at, event, expected_version, through
        )
        doc = self._col.find_one_and_update(
            plan.query, plan.update, return_document=ReturnDocument.AFTER
        )
        return None if doc is None else _to_record(doc)

    def apply_blind(self, plan: AdvancePlan) -> list[ExecutionEvent] | None:
        """Apply a compare-and-set without reading the record back: its events, or None.

        Why: a caller that holds the record it expects (state and version)
        knows the result of its own compare-and-set already, and reading the
        whole record back (history included) on every step of fifty ladders
        cost the database and the caller more than the write itself. The
        plan ran the same checks as ``advance``; None means another worker
        moved the record first.
        """
        matched = self._col.update_one(plan.query, plan.update).matched_count
        return list(plan.events) if matched == 1 else None

    def advance_or_raise(
        self,
        execution_id: str,
        expected_state: ExecutionState,
        new_state: ExecutionState,
        fields: Mapping[str, Any] | None = None,
        *,
        at: datetime,
        event: ExecutionEvent | None = None,
        expected_version: int | None = None,
    ) -> ExecutionRecord:
        """``advance`` that raises ``StaleExecution`` instead of returning None."""
        record = self.advance(
            execution_id,
            expected_state,
            new_state,
            fields,
            at=at,
            event=event,
            expected_version=expected_version,
        )
        if record is None:
            raise StaleExecution(execution_id, expected_state)
        return record

    def append_event(
        self,
        execution_id: str,
        event: ExecutionEvent,
        fields: Mapping[str, Any] | None = None,
    ) -> ExecutionRecord | None:
        """Append history (and set ``fields``) without a state change; None if unknown."""
        updates = _check_fields(fields or {})
        doc = self._col.find_one_and_update(
            {"_id": execution_id},
            {
                "$set": {**updates, "updated_at": to_bson(event.at)},
                "$push": {"events": to_bson(event)},
            },
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _to_record(doc)
