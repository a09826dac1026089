"""The ``signals`` ledger: the first accepted signal of each trading date (SPEC section 2).

Why a ledger keyed by date rather than by signal id: the sheet is edited by
hand. If a person changes today's row after it traded, the new row has a new
signal id; keying by id would trade it again. Keyed by date, the unique index
lets exactly one signal per day through, and a different one is reported as
CHANGED for a person to decide (SIGNAL_CHANGED), never traded.

The polling function calls ``record_first`` every poll (once a second), so a
changed row would be seen hundreds of times; ``first_seen`` on the result
tells the caller whether this particular change is new, so it alerts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from spreadpilot.adapters.mongo import Document, to_bson, with_codec
from spreadpilot.domain.signals import Signal

COLLECTION = "signals"


class RecordOutcome(StrEnum):
    ACCEPTED = "accepted"  # first signal of the date: trade it
    DUPLICATE = "duplicate"  # the same signal again: nothing to do
    CHANGED = "changed"  # a different signal for a date that already has one


@dataclass(frozen=True)
class RecordResult:
    """Outcome of ``record_first`` and the signal the ledger holds for the date."""

    outcome: RecordOutcome
    recorded: Signal
    first_seen: bool = True

    @property
    def accepted(self) -> bool:
        return self.outcome is RecordOutcome.ACCEPTED

    @property
    def duplicate(self) -> bool:
        return self.outcome is RecordOutcome.DUPLICATE

    @property
    def changed(self) -> bool:
        return self.outcome is RecordOutcome.CHANGED


def _signal_doc(signal: Signal) -> Document:
    doc: Document = to_bson(signal.model_dump(mode="json"))
    return doc


class SignalsLedger:
    """First-signal-per-date ledger over ``signals`` (unique on ``trading_date``)."""

    def __init__(self, db: Database[Any]) -> None:
        self._col: Collection[Document] = with_codec(db)[COLLECTION]

    def ensure_indexes(self) -> None:
        """Idempotent; the unique date index is the exactly-once guarantee."""
        self._col.create_index(
            [("trading_date", ASCENDING)], unique=True, name="trading_date_unique"
        )
        self._col.create_index([("signal_id", ASCENDING)], name="signal_id")

    def record_first(self, signal: Signal, *, at: datetime) -> RecordResult:
        """Record ``signal`` if it is the first of its date; otherwise compare.

        - no signal yet for the date: stored, ACCEPTED;
        - the same ``signal_id``: DUPLICATE (a re-poll, a redelivery);
        - another ``signal_id``: CHANGED, the new one appended to the date's
          ``changes`` once (``first_seen`` False on later sightings).
        """
        day = signal.trading_date.isoformat()
        doc: Document = {
            "_id": day,
            "trading_date": day,
            "signal_id": signal.signal_id,
            "signal": _signal_doc(signal),
            "recorded_at": to_bson(at),
            "changes": [],
            "change_ids": [],
        }
        try:
            self._col.insert_one(doc)
            return RecordResult(RecordOutcome.ACCEPTED, signal)
        except DuplicateKeyError:
            pass
        existing = self._col.find_one({"trading_date": day})
        if existing is None:  # deleted in between by a person; try once more
            return self.record_first(signal, at=at)
        recorded = Signal.model_validate(existing["signal"])
        if recorded.signal_id == signal.signal_id:
            return RecordResult(RecordOutcome.DUPLICATE, recorded, first_seen=False)
        pushed = self._col.update_one(
            {"_id": existing["_id"], "change_ids": {"$ne": signal.signal_id}},
            {
                "$push": {
                    "changes": {"signal": _signal_doc(signal), "seen_at": to_bson(at)},
                    "change_ids": signal.signal_id,
                }
            },
        )
        return RecordResult(RecordOutcome.CHANGED, recorded, first_seen=pushed.modified_count == 1)

    def get(self, trading_date: date) -> Signal | None:
        """The signal recorded for a date, or None."""
        doc = self._col.find_one({"trading_date": trading_date.isoformat()})
        return None if doc is None else Signal.model_validate(doc["signal"])

    def changes(self, trading_date: date) -> list[Signal]:
        """The differing signals seen for a date after the first, oldest first."""
        doc = self._col.find_one({"trading_date": trading_date.isoformat()})
        if doc is None:
            return []
        return [Signal.model_validate(c["signal"]) for c in doc.get("changes", [])]

    def latest(self) -> Signal | None:
        """The most recent recorded signal (for ``/status``)."""
        doc = self._col.find_one({}, sort=[("trading_date", -1)])
        return None if doc is None else Signal.model_validate(doc["signal"])
