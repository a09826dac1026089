"""The ``followers`` collection, read and written only as validated ``Follower`` models.

Why validation on both sides: a follower record sizes orders on someone's
money, and people edit it (CLI, console). Writes go through the domain model
so an invalid value never reaches the database; reads validate too, so a
record broken by hand fails loudly for that follower only (``list_enabled``
skips and reports it) instead of trading with a default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from spreadpilot.adapters.mongo import Document, to_bson, with_codec
from spreadpilot.domain.followers import Follower, FollowerState

log = logging.getLogger(__name__)

COLLECTION = "followers"

# Changing the id would orphan executions, fills and P&L rows keyed on it.
_IMMUTABLE = frozenset({"id", "_id"})


class FollowerNotFound(LookupError):
    """No follower with that id."""

    def __init__(self, follower_id: str) -> None:
        super().__init__(f"follower {follower_id!r} not found")
        self.follower_id = follower_id


class FollowerExists(ValueError):
    """A follower with that id already exists."""

    def __init__(self, follower_id: str) -> None:
        super().__init__(f"follower {follower_id!r} already exists")
        self.follower_id = follower_id


class InvalidFollowerUpdate(ValueError):
    """An update names an unknown or immutable field, or fails validation."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in problems))


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic errors as ``(field.path, reason)`` pairs people can read."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(record)"
        if field == "_id":
            field = "id"
        problems.append((field, str(error["msg"])))
    return problems


# Bumped on every write; updates are conditional on it (optimistic locking).
REVISION = "revision"


def _document(follower: Follower, revision: int) -> Document:
    doc: Document = to_bson(follower.model_dump(by_alias=True))
    doc[REVISION] = revision
    return doc


class FollowersRepository:
    """CRUD over ``followers`` with the domain ``Follower`` model."""

    def __init__(self, db: Database[Any]) -> None:
        self._col: Collection[Document] = with_codec(db)[COLLECTION]

    def ensure_indexes(self) -> None:
        """Idempotent: the lookups ``list_enabled`` and the sidecar shard routing use."""
        self._col.create_index([("enabled", ASCENDING)], name="enabled")
        self._col.create_index([("account", ASCENDING)], name="account")

    def add(self, follower: Follower) -> Follower:
        """Insert a new follower; ``FollowerExists`` if the id is taken."""
        try:
            self._col.insert_one(_document(follower, 1))
        except DuplicateKeyError:
            raise FollowerExists(follower.id) from None
        return follower

    def save(self, follower: Follower) -> Follower:
        """Insert or replace the whole record (what an import or the console does)."""
        current = self._col.find_one({"_id": follower.id}, {REVISION: 1})
        revision = int((current or {}).get(REVISION) or 0) + 1
        self._col.replace_one({"_id": follower.id}, _document(follower, revision), upsert=True)
        return follower

    def get(self, follower_id: str) -> Follower | None:
        """The follower, or None if there is none with that id."""
        doc = self._col.find_one({"_id": follower_id})
        return None if doc is None else Follower.model_validate(doc)

    def require(self, follower_id: str) -> Follower:
        """The follower, or ``FollowerNotFound``."""
        found = self.get(follower_id)
        if found is None:
            raise FollowerNotFound(follower_id)
        return found

    def list_all(self) -> list[Follower]:
        """Every follower by id; a record that fails validation raises (fix it)."""
        return [Follower.model_validate(d) for d in self._col.find({}).sort("_id", ASCENDING)]

    def list_enabled(self) -> list[Follower]:
        """Enabled followers by id. An invalid record is logged and left out, so one
        broken record cannot stop every other follower from trading."""
        followers = []
        for doc in self._col.find({"enabled": True}).sort("_id", ASCENDING):
            try:
                followers.append(Follower.model_validate(doc))
            except ValidationError as exc:
                log.error(
                    "skipping invalid follower record",
                    extra={"follower_id": doc.get("_id"), "problems": validation_problems(exc)},
                )
        return followers

    def update(self, follower_id: str, changes: Mapping[str, Any]) -> Follower:
        """Apply field changes after validating the whole resulting record.

        Raises ``FollowerNotFound`` or ``InvalidFollowerUpdate`` (naming each
        bad field). The write is conditional on the record not having changed
        since it was read, so two concurrent edits cannot silently merge.
        """
        unknown = [k for k in changes if k not in Follower.model_fields or k in _IMMUTABLE]
        if unknown:
            raise InvalidFollowerUpdate(
                [(k, "cannot be changed" if k in _IMMUTABLE else "unknown field") for k in unknown]
            )
        current_doc = self._col.find_one({"_id": follower_id})
        if current_doc is None:
            raise FollowerNotFound(follower_id)
        current = Follower.model_validate(current_doc)
        merged = {**current.model_dump(by_alias=True), **changes}
        try:
            updated = Follower.model_validate(merged)
        except ValidationError as exc:
            raise InvalidFollowerUpdate(validation_problems(exc)) from None
        revision = current_doc.get(REVISION)
        new_doc = _document(updated, int(revision or 0) + 1)
        result = self._col.find_one_and_replace(
            {"_id": follower_id, REVISION: revision},
            new_doc,
            return_document=ReturnDocument.AFTER,
        )
        if result is None:
            raise InvalidFollowerUpdate(
                [("(record)", "changed by someone else meanwhile; read it again and retry")]
            )
        return updated

    def set_enabled(self, follower_id: str, enabled: bool) -> Follower:
        """Enable or disable; disabling also moves an ACTIVE follower to DISABLED and
        enabling moves a DISABLED one back to ACTIVE (HALTED and MANUAL_INTERVENTION
        are left for a person to clear)."""
        current = self.require(follower_id)
        changes: dict[str, Any] = {"enabled": enabled}
        if not enabled and current.state is FollowerState.ACTIVE:
            changes["state"] = FollowerState.DISABLED
        if enabled and current.state is FollowerState.DISABLED:
            changes["state"] = FollowerState.ACTIVE
        return self.update(follower_id, changes)

    def set_state(self, follower_id: str, state: FollowerState) -> Follower:
        """Set the follower's state (HALTED by the kill switch, etc.)."""
        return self.update(follower_id, {"state": state})

    def delete(self, follower_id: str) -> bool:
        """Remove the record; False if there was none. History keyed on the id stays."""
        return self._col.delete_one({"_id": follower_id}).deleted_count == 1
