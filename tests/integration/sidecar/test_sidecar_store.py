"""The sidecar's execution store on FerretDB: batch creation and the record a write returns."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from spreadpilot.domain.execution import ExecutionState as S
from spreadpilot.domain.signals import manual_signal

from sidecar.store import StaleRecord, Step
from sidecar.stores_impl import MongoExecutionStore

pytestmark = pytest.mark.integration

DAY = date(2026, 1, 5)
# New York time with microseconds: what the executor's clock hands the store.
T0 = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=ZoneInfo("America/New_York"))


def _signal(qty: int = 1) -> Any:
    body = {"strategy": "bull_put", "qty_per_leg": qty, "strike_long": 475, "strike_short": 480}
    return manual_signal(body, today=DAY)


def test_the_record_a_write_returns_is_the_record_a_read_returns(mongo_db: Any) -> None:
    """``advance`` builds the new record itself instead of reading it back; it
    must be exactly what a read then returns (fields, data, history, times),
    or the executor would act on a record that is not the stored one."""

    async def scenario() -> None:
        store = MongoExecutionStore(mongo_db)
        await store.ensure_indexes()
        signal = _signal()
        made = await store.create_many(signal, ["fa", "fb"], T0)
        assert [created for created, _ in made] == [True, True]
        record = made[0][1]
        assert record == await store.get(record["_id"])

        at = [T0 + timedelta(seconds=s, microseconds=777) for s in range(1, 6)]
        via = [
            Step(S.SIZED, {"qty": 2}, at[0]),
            Step(S.QUOTED, {"legs": {"long": {"con_id": 7}}, "mid_credit": 0.61}, at[1]),
            Step(S.MARGIN_OK, {"margin": {"init_change": 1200.0}}, at[2]),
        ]
        working = await store.advance(
            record,
            S.WORKING,
            {"order_id": 41, "limit": -0.61, "rung": 0, "rung_started_at": at[3]},
            at[3],
            via,
        )
        assert working == await store.get(record["_id"])
        assert (working["state"], working["version"], working["qty"]) == ("WORKING", 1, 2)
        assert [e["state"] for e in working["events"]] == [
            "RECEIVED",
            "SIZED",
            "QUOTED",
            "MARGIN_OK",
            "WORKING",
        ]

        sent = await store.advance(
            working, S.WORKING, {"submitted": True, "perm_id": None}, at[4], urgent=False
        )
        assert sent == await store.get(record["_id"])
        assert sent["submitted"] is True and sent["legs"] == {"long": {"con_id": 7}}
        assert sent["updated_at"] == at[4].astimezone(UTC).replace(microsecond=124000)

        # The copy the write replaced is stale: a second writer holding it loses.
        with pytest.raises(StaleRecord):
            await store.advance(working, S.WORKING, {"rung": 1}, at[4])
        assert await store.get(record["_id"]) == sent

        # Created again (a redelivery): the stored records come back, none is new.
        again = await store.create_many(signal, ["fa", "fb", "fc"], at[4])
        assert [created for created, _ in again] == [False, False, True]
        assert again[0][1] == sent

    asyncio.run(scenario())
