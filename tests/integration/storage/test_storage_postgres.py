"""Migrations, fills and P&L repositories against the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.storage.fills import ExecutionFill, FillsRepository
from spreadpilot.storage.migrate import MigrationError, load_migrations, migrate
from spreadpilot.storage.pnl import (
    _BATCH_ROWS,
    CommissionStatement,
    DailyPnl,
    IntradaySnapshot,
    MonthlyPnl,
    PnlRepository,
)

pytestmark = pytest.mark.integration

DAY = date(2026, 1, 5)
T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Postgres]:
    db = Postgres(pg_dsn)
    migrate(db)
    yield db
    db.close()


def test_migrations_apply_once_and_are_idempotent(pg_dsn: str) -> None:
    db = Postgres(pg_dsn)
    first = migrate(db)
    second = migrate(db)
    assert [m.version for m in first.applied] == [m.version for m in load_migrations()]
    assert second.applied == [] and second.already_applied == [m.version for m in first.applied]
    tables = {r[0] for r in db.query("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert {"fills", "pnl_intraday", "pnl_daily", "pnl_monthly", "commission_monthly"} <= tables
    assert {"schema_migrations"} <= tables
    db.close()


def test_concurrent_migrate_runs_are_serialised(pg_dsn: str) -> None:
    reports = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(migrate(Postgres(pg_dsn)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r.applied) for r in reports) == [0, 0, 0, len(load_migrations())]


def test_an_edited_applied_migration_is_refused(pg_dsn: str) -> None:
    db = Postgres(pg_dsn)
    migrate(db)
    changed = load_migrations()
    changed[0] = type(changed[0])(changed[0].version, changed[0].name, changed[0].sql + "\n-- x")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db, changed)
    db.close()


def _fill(exec_id: str = "0001.01", **overrides: object) -> ExecutionFill:
    values: dict[str, object] = {
        "exec_id": exec_id,
        "follower_id": "f1",
        "account": "DU1234567",
        "symbol": "QQQ",
        "sec_type": "OPT",
        "side": "SLD",
        "qty": Decimal(2),
        "price": Decimal("1.25"),
        "exec_time": T0,
        "trading_date": DAY,
        "order_ref": "sp-f1-abc",
        "perm_id": 123,
        "con_id": 456,
        "right": "P",
        "strike": Decimal(445),
        "expiry": DAY,
        "multiplier": 100,
    }
    values.update(overrides)
    return ExecutionFill(**values)  # type: ignore[arg-type]


def test_fill_upserted_twice_is_one_row(pg: Postgres) -> None:
    fills = FillsRepository(pg)
    assert fills.upsert_execution(_fill()) is True
    assert fills.upsert_execution(_fill()) is False
    assert pg.query("SELECT count(*) FROM fills")[0][0] == 1
    (row,) = fills.list_for_follower("f1", DAY)
    assert (row.side, row.qty, row.price, row.commission) == ("SLD", 2, Decimal("1.25"), None)
    assert row.signed_qty == -2


def test_commission_after_the_execution(pg: Postgres) -> None:
    fills = FillsRepository(pg)
    fills.upsert_execution(_fill())
    assert fills.attach_commission("0001.01", 1.3, "USD", 1.7976931348623157e308) is True
    assert fills.attach_commission("0001.01", 1.3, "USD", 1.7976931348623157e308) is False
    row = fills.get("0001.01")
    assert row is not None
    assert (row.commission, row.commission_currency, row.realized_pnl_ib) == (
        Decimal("1.3"),
        "USD",
        None,
    )
    assert fills.missing_commission(DAY) == []


def test_commission_before_the_execution(pg: Postgres) -> None:
    fills = FillsRepository(pg)
    assert fills.attach_commission("0002.01", Decimal("0.65"), "USD", -12.5) is True
    assert fills.get("0002.01") is None  # only half a fill so far
    assert fills.list_for_follower("f1", DAY) == []
    assert fills.orphan_commission_ids() == ["0002.01"]
    assert fills.upsert_execution(_fill("0002.01", side="BOT")) is True
    row = fills.get("0002.01")
    assert row is not None
    assert (row.side, row.commission, row.realized_pnl_ib) == (
        "BOT",
        Decimal("0.65"),
        Decimal("-12.5"),
    )
    assert fills.orphan_commission_ids() == []
    assert fills.upsert_execution(_fill("0002.01", side="BOT")) is False
    assert pg.query("SELECT count(*) FROM fills")[0][0] == 1


def test_fill_listings(pg: Postgres) -> None:
    fills = FillsRepository(pg)
    fills.upsert_execution(_fill("a", exec_time=T0 + timedelta(seconds=2)))
    fills.upsert_execution(_fill("b", exec_time=T0))
    fills.upsert_execution(_fill("c", follower_id="f2", order_ref="other"))
    fills.upsert_execution(_fill("d", trading_date=DAY + timedelta(days=1), order_ref="x"))
    assert [f.exec_id for f in fills.list_for_follower("f1", DAY)] == ["b", "a"]
    assert [f.exec_id for f in fills.list_for_follower("f1")] == ["b", "a", "d"]
    assert [f.exec_id for f in fills.list_by_order_ref("sp-f1-abc")] == ["b", "a"]
    assert [f.exec_id for f in fills.list_for_date(DAY)] == ["b", "a", "c"]
    assert fills.follower_dates(DAY, DAY) == [("f1", DAY), ("f2", DAY)]


def _snapshot(minutes: int, total: str) -> IntradaySnapshot:
    return IntradaySnapshot(
        follower_id="f1",
        snapshot_time=T0 + timedelta(minutes=minutes),
        trading_date=DAY,
        realized=Decimal(0),
        unrealized=Decimal(total),
        total=Decimal(total),
        position_count=2,
        market_value=Decimal("-150"),
        commissions=Decimal("2.6"),
    )


def _daily(total: str, finalized: bool) -> DailyPnl:
    return DailyPnl(
        follower_id="f1",
        trading_date=DAY,
        opening_pnl=Decimal(0),
        closing_pnl=Decimal(total),
        realized=Decimal(total),
        unrealized=Decimal(0),
        total=Decimal(total),
        trades=2,
        volume=Decimal(4),
        commissions=Decimal("2.6"),
        max_drawdown=Decimal("-40"),
        max_profit=Decimal("90"),
        finalized=finalized,
    )


def test_intraday_snapshots_are_idempotent(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    assert repo.insert_intraday(_snapshot(0, "10")) is True
    assert repo.insert_intraday(_snapshot(0, "10")) is False
    assert repo.insert_intraday(_snapshot(1, "-5.5")) is True
    assert [s.total for s in repo.intraday_for_day("f1", DAY)] == [Decimal(10), Decimal("-5.5")]
    latest = repo.latest_intraday("f1", DAY)
    assert latest is not None and latest.total == Decimal("-5.5")


def test_intraday_batch_insert_is_idempotent(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    assert repo.insert_intraday(_snapshot(0, "10")) is True
    # One already stored, one new, and the new one twice in the same batch.
    batch = [_snapshot(0, "10"), _snapshot(1, "-5.5"), _snapshot(1, "-5.5")]
    assert repo.insert_intraday_many(batch) == 1
    assert repo.insert_intraday_many(batch) == 0
    assert repo.insert_intraday_many([]) == 0
    assert [s.total for s in repo.intraday_for_day("f1", DAY)] == [Decimal(10), Decimal("-5.5")]


def test_intraday_batch_spans_several_statements(pg: Postgres) -> None:
    """More rows than one statement holds: every row lands once, in order, and
    a retry of the whole batch writes nothing twice."""
    repo = PnlRepository(pg)
    count = 2 * _BATCH_ROWS + 37
    batch = [_snapshot(i, str(i)) for i in range(count)]
    assert repo.insert_intraday_many(batch) == count
    assert repo.insert_intraday_many(batch) == 0
    stored = repo.intraday_for_day("f1", DAY)
    assert [s.total for s in stored] == [Decimal(i) for i in range(count)]


def test_daily_upsert_is_idempotent_and_final_wins(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    assert repo.upsert_daily(_daily("50", finalized=False)) is True
    assert repo.upsert_daily(_daily("60", finalized=True)) is True
    assert repo.upsert_daily(_daily("60", finalized=True)) is True
    assert repo.upsert_daily(_daily("70", finalized=False)) is False  # late estimate refused
    assert pg.query("SELECT count(*) FROM pnl_daily")[0][0] == 1
    stored = repo.get_daily("f1", DAY)
    assert stored == _daily("60", finalized=True)
    assert repo.previous_close("f1", DAY + timedelta(days=1)) == stored


def test_catch_up_queries(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    fills = FillsRepository(pg)
    repo.insert_intraday(_snapshot(0, "10"))
    fills.upsert_execution(_fill("z", follower_id="f2", trading_date=DAY))
    assert repo.days_to_roll_up(until=DAY) == [("f1", DAY), ("f2", DAY)]
    assert repo.days_to_roll_up(until=DAY - timedelta(days=1)) == []
    repo.upsert_daily(_daily("60", finalized=True))
    assert repo.days_to_roll_up(until=DAY) == [("f2", DAY)]
    assert repo.months_to_roll_up(before_month=date(2026, 2, 1)) == [("f1", date(2026, 1, 1))]
    assert repo.months_to_roll_up(before_month=date(2026, 1, 1)) == []
    repo.upsert_monthly(_monthly("60"))
    # still owed: the commission statement
    assert repo.months_to_roll_up(before_month=date(2026, 2, 1)) == [("f1", date(2026, 1, 1))]
    repo.upsert_commission(_statement("60"))
    assert repo.months_to_roll_up(before_month=date(2026, 2, 1)) == []
    assert [d.trading_date for d in repo.daily_for_month("f1", date(2026, 1, 20))] == [DAY]


def _monthly(total: str) -> MonthlyPnl:
    return MonthlyPnl(
        follower_id="f1",
        month=date(2026, 1, 1),
        total=Decimal(total),
        realized=Decimal(total),
        commissions=Decimal("2.6"),
        trades=2,
        trading_days=1,
        best_day=Decimal(total),
        worst_day=Decimal(total),
        best_day_date=DAY,
        worst_day_date=DAY,
        winning_days=1,
        losing_days=0,
    )


def test_monthly_upsert_is_idempotent(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    repo.upsert_monthly(_monthly("60"))
    repo.upsert_monthly(_monthly("60"))
    repo.upsert_monthly(_monthly("65"))
    assert pg.query("SELECT count(*) FROM pnl_monthly")[0][0] == 1
    assert repo.get_monthly("f1", date(2026, 1, 31)) == _monthly("65")


def _statement(pnl: str) -> CommissionStatement:
    amount = max(Decimal(pnl), Decimal(0)) * Decimal("0.2")
    return CommissionStatement(
        follower_id="f1",
        month=date(2026, 1, 1),
        pnl=Decimal(pnl),
        commission_pct=Decimal(20),
        commission_amount=amount,
        currency="USD",
        payable=amount > 0,
        iban="DE89370400440532013000",
        email="a@example.com",
    )


def test_commission_upsert_never_touches_paid_or_sent(pg: Postgres) -> None:
    repo = PnlRepository(pg)
    assert repo.upsert_commission(_statement("100")) is True
    assert repo.upsert_commission(_statement("120")) is True  # not sent yet: corrected
    assert repo.mark_sent("f1", date(2026, 1, 1), T0) is True
    assert repo.mark_sent("f1", date(2026, 1, 1), T0) is False
    assert repo.upsert_commission(_statement("999")) is False  # sent: frozen
    stored = repo.get_commission("f1", date(2026, 1, 1))
    assert stored is not None
    assert (stored.pnl, stored.commission_amount, stored.sent, stored.paid) == (
        Decimal(120),
        Decimal(24),
        True,
        False,
    )
    assert repo.mark_paid("f1", date(2026, 1, 1), T0) is True
    stored = repo.get_commission("f1", date(2026, 1, 1))
    assert stored is not None and stored.paid and stored.sent and stored.paid_at == T0
    assert repo.commissions_for_month(date(2026, 1, 1), unsent_only=True) == []


def test_currency_label_enforced_by_the_table(pg: Postgres) -> None:
    import pg8000.exceptions

    with pytest.raises(pg8000.exceptions.DatabaseError, match="commission_currency_labelled"):
        pg.query(
            "INSERT INTO commission_monthly (follower_id, month, pnl, commission_pct,"
            " commission_amount, currency) VALUES ('f1', '2026-01-01', 1, 20, 0.2, 'EUR')"
        )


def test_a_dead_connection_is_replaced_transparently(pg: Postgres, pg_dsn: str) -> None:
    repo = PnlRepository(pg)
    repo.insert_intraday(_snapshot(0, "1"))
    admin = Postgres(pg_dsn)
    admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    admin.close()
    assert repo.insert_intraday(_snapshot(1, "2")) is True
