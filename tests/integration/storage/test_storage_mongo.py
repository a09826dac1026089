"""Executions, signals ledger, followers and alerts repositories on FerretDB."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from spreadpilot.domain.alerts import Alert, AlertType
from spreadpilot.domain.execution import ExecutionState as S
from spreadpilot.domain.execution import IllegalTransition
from spreadpilot.domain.followers import Follower, FollowerState
from spreadpilot.domain.signals import Signal, manual_signal
from spreadpilot.storage.alerts import AlertsRepository, DeliveryStatus
from spreadpilot.storage.executions import (
    ExecutionEvent,
    ExecutionRecord,
    ExecutionsRepository,
    StaleExecution,
    plan_advance,
)
from spreadpilot.storage.followers import (
    FollowerExists,
    FollowerNotFound,
    FollowersRepository,
    InvalidFollowerUpdate,
)
from spreadpilot.storage.signals import RecordOutcome, SignalsLedger

pytestmark = pytest.mark.integration

T = TypeVar("T")

DAY = date(2026, 1, 5)
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def _signal(qty: int = 2) -> Signal:
    body = {"strategy": "Long", "qty_per_leg": qty, "strike_long": 440, "strike_short": 445}
    return manual_signal(body, today=DAY)


@pytest.fixture
def executions(mongo_db: Any) -> ExecutionsRepository:
    repo = ExecutionsRepository(mongo_db)
    repo.ensure_indexes()
    repo.ensure_indexes()  # idempotent
    return repo


def _all_at_once(work: Callable[[int], T], count: int) -> list[T]:
    """Run ``work(0..count-1)`` on as many threads, released together; results in order."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_ten_concurrent_creations_make_exactly_one(executions: ExecutionsRepository) -> None:
    signal = _signal()

    def create(i: int) -> tuple[ExecutionRecord, bool]:
        # distinct ids: only the (signal_id, follower_id) unique index can stop them
        record = ExecutionRecord.new(signal, "f1", T0).model_copy(update={"id": f"try-{i}"})
        return executions.create_if_absent(record)

    results = _all_at_once(create, 10)
    assert sum(created for _, created in results) == 1
    assert len({record.id for record, _ in results}) == 1
    assert len(executions.list_for_signal(signal.signal_id)) == 1


def test_compare_and_set_refuses_a_stale_state(executions: ExecutionsRepository) -> None:
    record, created = executions.create_if_absent(ExecutionRecord.new(_signal(), "f1", T0))
    assert created and record.state is S.RECEIVED
    later = T0 + timedelta(seconds=1)
    sized = executions.advance(record.id, S.RECEIVED, S.SIZED, {"qty": 2}, at=later)
    assert sized is not None
    assert (sized.state, sized.qty, sized.version, sized.updated_at) == (S.SIZED, 2, 1, later)
    assert executions.advance(record.id, S.RECEIVED, S.SIZED, {"qty": 3}, at=later) is None
    with pytest.raises(StaleExecution):
        executions.advance_or_raise(record.id, S.RECEIVED, S.SIZED, at=later)
    with pytest.raises(IllegalTransition):
        executions.advance(record.id, S.SIZED, S.FILLED, at=later)
    with pytest.raises(ValueError, match="not settable"):
        executions.advance(record.id, S.SIZED, S.QUOTED, {"follower_id": "x"}, at=later)
    stored = executions.get(record.id)
    assert stored is not None and (stored.state, stored.qty) == (S.SIZED, 2)


def test_version_guards_self_transitions(executions: ExecutionsRepository) -> None:
    record, _ = executions.create_if_absent(ExecutionRecord.new(_signal(), "f1", T0))
    for a, b in ((S.RECEIVED, S.SIZED), (S.SIZED, S.QUOTED), (S.QUOTED, S.MARGIN_OK)):
        executions.advance_or_raise(record.id, a, b, at=T0)
    working = executions.advance_or_raise(
        record.id, S.MARGIN_OK, S.WORKING, {"order_id": 7, "limit_price": -0.8, "rung": 0}, at=T0
    )
    rung1 = executions.advance(
        record.id, S.WORKING, S.WORKING, {"rung": 1}, at=T0, expected_version=working.version
    )
    assert rung1 is not None and rung1.rung == 1
    # a second worker holding the old version cannot move the rung too
    stale = executions.advance(
        record.id, S.WORKING, S.WORKING, {"rung": 1}, at=T0, expected_version=working.version
    )
    assert stale is None


def test_steps_taken_on_the_way_are_written_in_one_compare_and_set(
    executions: ExecutionsRepository,
) -> None:
    """The steps before an order go to the store in the write that reserves the
    order id: one version step, every hop checked, each with its own time."""
    record, _ = executions.create_if_absent(ExecutionRecord.new(_signal(), "f1", T0))
    at = [T0 + timedelta(seconds=s) for s in range(5)]
    through = [
        ExecutionEvent(at=at[1], kind="transition", state=S.SIZED),
        ExecutionEvent(at=at[2], kind="transition", state=S.QUOTED),
        ExecutionEvent(at=at[3], kind="transition", state=S.MARGIN_OK),
    ]
    with pytest.raises(IllegalTransition):  # SIZED -> MARGIN_OK skips QUOTED
        executions.advance(
            record.id, S.RECEIVED, S.WORKING, at=at[4], through=[through[0], through[2]]
        )
    with pytest.raises(ValueError, match="name the state"):
        executions.advance(
            record.id, S.RECEIVED, S.WORKING, at=at[4], through=[ExecutionEvent(at=T0, kind="x")]
        )
    working = executions.advance(
        record.id, S.RECEIVED, S.WORKING, {"order_id": 9}, at=at[4], through=through
    )
    assert working is not None and working.version == 1 and working.order_id == 9
    assert [(e.state, e.at) for e in working.events[1:]] == [
        (S.SIZED, at[1]),
        (S.QUOTED, at[2]),
        (S.MARGIN_OK, at[3]),
        (S.WORKING, at[4]),
    ]
    assert working.events[-1].detail == {"from": "MARGIN_OK"}
    # The compare-and-set still guards: a second worker from RECEIVED loses.
    assert executions.advance(record.id, S.RECEIVED, S.WORKING, at=at[4], through=through) is None


def test_batch_creation_makes_each_pair_once_whoever_races(
    executions: ExecutionsRepository,
) -> None:
    """One signal's records for many followers in one write: pairs that exist
    come back as they are stored (not created), new ones are created, and two
    writers racing on the same pairs create each pair exactly once."""
    signal = _signal()
    first = [ExecutionRecord.new(signal, f"f{i}", T0) for i in range(3)]
    assert [created for _, created in executions.create_many_if_absent(first)] == [True] * 3
    executions.advance_or_raise(first[1].id, S.RECEIVED, S.SKIPPED, at=T0)

    later = T0 + timedelta(seconds=5)
    again = [ExecutionRecord.new(signal, f"f{i}", later) for i in range(5)]
    outcomes = executions.create_many_if_absent(again)
    assert [created for _, created in outcomes] == [False, False, False, True, True]
    assert [r.follower_id for r, _ in outcomes] == [f"f{i}" for i in range(5)]
    # the existing records are the stored ones, not the ones offered
    assert outcomes[1][0].state is S.SKIPPED and outcomes[0][0].created_at == T0
    assert outcomes[3][0].created_at == later
    assert executions.create_many_if_absent([]) == []

    racing = _signal(qty=3)  # another signal (ids derive from the content)
    results = _all_at_once(
        lambda _: executions.create_many_if_absent(
            [ExecutionRecord.new(racing, f"r{i}", T0) for i in range(10)]
        ),
        2,
    )
    for i in range(10):
        assert sum(results[w][i][1] for w in range(2)) == 1, f"pair r{i} created twice or never"
        assert results[0][i][0].id == results[1][i][0].id
    assert len(executions.list_for_signal(racing.signal_id)) == 10


def test_blind_compare_and_set_reports_what_it_appended(
    executions: ExecutionsRepository,
) -> None:
    """``apply_blind`` runs a checked plan without reading the record back: the
    events it pushed on success, None when another write got there first."""
    record, _ = executions.create_if_absent(ExecutionRecord.new(_signal(), "f1", T0))
    later = T0 + timedelta(seconds=2)
    sized = plan_advance(record.id, S.RECEIVED, S.SIZED, {"qty": 2}, later, None, 0, ())
    pushed = executions.apply_blind(sized)
    assert pushed is not None and [(e.state, e.at) for e in pushed] == [(S.SIZED, later)]
    stored = executions.get(record.id)
    assert stored is not None
    assert (stored.state, stored.qty, stored.version) == (S.SIZED, 2, 1)
    assert stored.events[-1] == pushed[-1]
    # the same version again: someone else's write now, so it loses
    stale = plan_advance(record.id, S.SIZED, S.QUOTED, None, later, None, 0, ())
    assert executions.apply_blind(stale) is None
    with pytest.raises(IllegalTransition):  # checked when planned, before any write
        plan_advance(record.id, S.SIZED, S.FILLED, None, later, None, None, ())
    assert executions.get(record.id) == stored


def test_events_history_and_lookups(executions: ExecutionsRepository) -> None:
    signal = _signal()
    record, _ = executions.create_if_absent(ExecutionRecord.new(signal, "f1", T0))
    other, _ = executions.create_if_absent(ExecutionRecord.new(signal, "f2", T0))
    executions.advance_or_raise(other.id, S.RECEIVED, S.SKIPPED, {"error": "qty 0"}, at=T0)
    executions.advance_or_raise(record.id, S.RECEIVED, S.SIZED, at=T0)
    appended = executions.append_event(
        record.id,
        ExecutionEvent(at=T0, kind="quote", detail={"mid": 0.92}),
        {"data": {"mid": 0.92}},
    )
    assert appended is not None
    assert [e.kind for e in appended.events] == ["received", "transition", "quote"]
    assert appended.events[1].state is S.SIZED and appended.data == {"mid": 0.92}
    assert appended.signal == signal
    assert [r.id for r in executions.find_unfinished()] == [record.id]
    assert executions.find_unfinished("f2") == []
    found = executions.find_by_order_ref(record.order_ref)
    assert found is not None and found.follower_id == "f1"
    assert executions.find(signal.signal_id, "f2") is not None
    assert {r.follower_id for r in executions.list_for_date(DAY)} == {"f1", "f2"}
    assert executions.append_event("nope", ExecutionEvent(at=T0, kind="x")) is None


def test_signals_ledger_accepts_first_then_duplicate_then_changed(mongo_db: Any) -> None:
    ledger = SignalsLedger(mongo_db)
    ledger.ensure_indexes()
    first = _signal(2)
    assert ledger.record_first(first, at=T0).outcome is RecordOutcome.ACCEPTED
    again = ledger.record_first(first, at=T0)
    assert again.duplicate and again.recorded == first
    edited = _signal(3)
    changed = ledger.record_first(edited, at=T0)
    assert changed.changed and changed.first_seen and changed.recorded == first
    seen_again = ledger.record_first(edited, at=T0)
    assert seen_again.changed and not seen_again.first_seen
    assert ledger.get(DAY) == first
    assert ledger.changes(DAY) == [edited]
    assert ledger.latest() == first
    assert ledger.get(DAY + timedelta(days=1)) is None


def test_signals_ledger_under_concurrency(mongo_db: Any) -> None:
    ledger = SignalsLedger(mongo_db)
    ledger.ensure_indexes()
    outcomes = _all_at_once(lambda i: ledger.record_first(_signal(2 + i % 2), at=T0).outcome, 6)
    assert outcomes.count(RecordOutcome.ACCEPTED) == 1


def _follower(**overrides: Any) -> Follower:
    data: dict[str, Any] = {
        "_id": "follower123",
        "name": "Alice",
        "email": "alice@example.com",
        "iban": "DE89 3704 0044 0532 0130 00",
        "gateway": {"host": "127.0.0.1", "port": 4002, "client_id": 11},
        "account": "DU1234567",
    }
    data.update(overrides)
    return Follower.model_validate(data)


def test_followers_crud_and_validation(mongo_db: Any) -> None:
    repo = FollowersRepository(mongo_db)
    repo.ensure_indexes()
    repo.add(_follower())
    repo.add(_follower(_id="bob", name="Bob", enabled=False, state="DISABLED"))
    with pytest.raises(FollowerExists, match="follower123"):
        repo.add(_follower())
    assert repo.require("follower123") == _follower()
    assert [f.id for f in repo.list_all()] == ["bob", "follower123"]
    assert [f.id for f in repo.list_enabled()] == ["follower123"]

    updated = repo.update("follower123", {"qty_multiplier": 2.5, "max_qty_per_leg": 20})
    assert (updated.qty_multiplier, updated.max_qty_per_leg) == (2.5, 20)
    with pytest.raises(InvalidFollowerUpdate) as bad:
        repo.update("follower123", {"qty_multiplier": 0, "commission_pct": 120})
    assert {field for field, _ in bad.value.problems} == {"qty_multiplier", "commission_pct"}
    with pytest.raises(InvalidFollowerUpdate, match="unknown field"):
        repo.update("follower123", {"qty_multiplyer": 2})
    with pytest.raises(InvalidFollowerUpdate, match="cannot be changed"):
        repo.update("follower123", {"id": "other"})
    with pytest.raises(FollowerNotFound, match="'ghost'"):
        repo.update("ghost", {"name": "x"})
    assert repo.require("follower123").qty_multiplier == 2.5  # failed updates wrote nothing

    disabled = repo.set_enabled("follower123", False)
    assert (disabled.enabled, disabled.state) == (False, FollowerState.DISABLED)
    halted = repo.set_state("bob", FollowerState.HALTED)
    assert repo.set_enabled("bob", True).state is FollowerState.HALTED == halted.state
    assert repo.set_enabled("follower123", True).state is FollowerState.ACTIVE
    assert repo.delete("bob") and not repo.delete("bob")
    assert repo.get("bob") is None


def test_list_enabled_skips_a_broken_record(mongo_db: Any) -> None:
    repo = FollowersRepository(mongo_db)
    repo.add(_follower())
    mongo_db["followers"].insert_one({"_id": "broken", "enabled": True, "name": "x"})
    assert [f.id for f in repo.list_enabled()] == ["follower123"]


def _alert(alert_id: str = "a-1") -> Alert:
    return Alert.create(
        AlertType.NO_MARGIN, None, "no margin", {"available": 100.0}, T0, "f1", alert_id
    )


def test_alerts_dedup_claims_and_dead_letters(mongo_db: Any) -> None:
    repo = AlertsRepository(mongo_db)
    repo.ensure_indexes()
    assert repo.record(_alert(), at=T0) is True
    assert repo.record(_alert(), at=T0) is False
    lease = timedelta(seconds=30)
    assert repo.claim("a-1", "telegram", at=T0, lease=lease) is True
    assert repo.claim("a-1", "telegram", at=T0, lease=lease) is False  # another worker's lease
    assert repo.claim("a-1", "email", at=T0, lease=lease) is True  # channels independent
    repo.mark_sent("a-1", "email", at=T0)
    assert repo.claim("a-1", "email", at=T0 + timedelta(hours=1), lease=lease) is False
    repo.mark_failed("a-1", "telegram", "HTTP 502 from https://x/bot123:SECRET/send", at=T0)
    assert repo.claim("a-1", "telegram", at=T0, lease=lease) is True
    repo.dead_letter("a-1", "telegram", "HTTP 502", at=T0)
    assert repo.claim("a-1", "telegram", at=T0 + timedelta(hours=1), lease=lease) is False

    stored = repo.get("a-1")
    assert stored is not None and stored.alert == _alert()
    assert stored.deliveries["email"].status is DeliveryStatus.SENT
    telegram = stored.deliveries["telegram"]
    assert (telegram.status, telegram.attempts) == (DeliveryStatus.DEAD, 2)
    (letter,) = repo.list_dead_letters()
    assert (letter.alert.id, letter.channel, letter.error) == ("a-1", "telegram", "HTTP 502")
    assert repo.count_dead_letters() == 1
    assert repo.requeue("a-1", "telegram", at=T0) is True
    assert repo.list_dead_letters() == [] and repo.count_dead_letters() == 0
    assert repo.claim("a-1", "telegram", at=T0, lease=lease) is True


def test_an_expired_lease_can_be_reclaimed(mongo_db: Any) -> None:
    repo = AlertsRepository(mongo_db)
    repo.record(_alert("a-2"), at=T0)
    lease = timedelta(seconds=30)
    assert repo.claim("a-2", "telegram", at=T0, lease=lease)
    assert repo.claim("a-2", "telegram", at=T0 + timedelta(seconds=31), lease=lease)
    stored = repo.get("a-2")
    assert stored is not None and stored.deliveries["telegram"].attempts == 2
    assert "SECRET" not in str(repo.recent())
