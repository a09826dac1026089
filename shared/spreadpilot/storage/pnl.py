"""The P&L tables: intraday snapshots, daily and monthly rollups, commission statements.

Every write is keyed so that a retried or re-run job converges instead of
double counting: Cloud Scheduler retries, and the catch-up queries below let a
job that missed a day (an outage at 16:30) roll it up later.

Two protections beyond idempotency:
- a finalized daily row is only replaced by another finalized row, so a late
  provisional write cannot undo the 16:30 rollup;
- a commission statement that was sent or paid is frozen: re-running the
  monthly rollup never changes an amount a follower was already asked to pay,
  and never touches the paid/sent flags (only ``mark_sent``/``mark_paid`` do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from spreadpilot.adapters.postgres import Connection, Postgres, rows_as_dicts


def month_start(day: date) -> date:
    """The first day of ``day``'s month: how ``month`` is keyed in the tables."""
    return day.replace(day=1)


@dataclass(frozen=True)
class IntradaySnapshot:
    """One mark-to-market of one follower (``pnl_intraday``)."""

    follower_id: str
    snapshot_time: datetime
    trading_date: date
    realized: Decimal
    unrealized: Decimal
    total: Decimal
    position_count: int = 0
    market_value: Decimal = Decimal(0)
    commissions: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.snapshot_time.tzinfo is None:
            raise ValueError("snapshot_time must be timezone-aware")


@dataclass(frozen=True)
class DailyPnl:
    """One follower's trading day (``pnl_daily``)."""

    follower_id: str
    trading_date: date
    opening_pnl: Decimal
    closing_pnl: Decimal
    realized: Decimal
    unrealized: Decimal
    total: Decimal
    trades: int
    volume: Decimal
    commissions: Decimal
    max_drawdown: Decimal
    max_profit: Decimal
    finalized: bool = False


@dataclass(frozen=True)
class MonthlyPnl:
    """One follower's month (``pnl_monthly``); ``month`` is the first day of it."""

    follower_id: str
    month: date
    total: Decimal
    realized: Decimal
    commissions: Decimal
    trades: int
    trading_days: int
    best_day: Decimal | None
    worst_day: Decimal | None
    best_day_date: date | None
    worst_day_date: date | None
    winning_days: int
    losing_days: int

    def __post_init__(self) -> None:
        if self.month.day != 1:
            raise ValueError(f"month must be the first day of the month, got {self.month}")


@dataclass(frozen=True)
class CommissionStatement:
    """What a follower owes for a month (``commission_monthly``).

    ``pnl`` is in ``pnl_currency``; ``commission_amount`` is in ``currency``,
    which may differ only when ``fx_rate`` was applied (the table enforces it,
    so USD is never labelled EUR by accident).
    """

    follower_id: str
    month: date
    pnl: Decimal
    commission_pct: Decimal
    commission_amount: Decimal
    currency: str
    payable: bool
    pnl_currency: str = "USD"
    fx_rate: Decimal | None = None
    iban: str | None = None
    email: str | None = None
    paid: bool = False
    sent: bool = False
    paid_at: datetime | None = None
    sent_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.month.day != 1:
            raise ValueError(f"month must be the first day of the month, got {self.month}")
        if self.currency != self.pnl_currency and self.fx_rate is None:
            raise ValueError(
                f"commission in {self.currency} of a P&L in {self.pnl_currency} needs an fx_rate"
            )


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _build(cls: type[Any], con: Connection, rows: list[list[Any]] | None) -> list[Any]:
    return [cls(**r) for r in rows_as_dicts(con, rows)]


#: rows per multi-row INSERT (9 parameters each). Not more: pg8000 turns each
#: named parameter into ``$n`` by searching the ones before it, so a statement
#: costs time in the square of its parameters; 1,000 rows spent 1.0 s of a
#: 1,000-follower mark in that search, 100 rows a statement spend 0.1 s in all.
_BATCH_ROWS = 100


class PnlRepository:
    """Idempotent writes and the reads of the P&L jobs and reports."""

    def __init__(self, pg: Postgres) -> None:
        self._pg = pg

    # -- intraday ---------------------------------------------------------

    def insert_intraday(self, snapshot: IntradaySnapshot) -> bool:
        """Store a snapshot; False if one already exists for (follower, snapshot_time)."""

        def work(con: Connection) -> bool:
            rows = con.run(
                """
                INSERT INTO pnl_intraday (follower_id, snapshot_time, trading_date, realized,
                    unrealized, total, position_count, market_value, commissions)
                VALUES (:follower_id, :snapshot_time, :trading_date, :realized, :unrealized,
                    :total, :position_count, :market_value, :commissions)
                ON CONFLICT (follower_id, snapshot_time) DO NOTHING
                RETURNING id
                """,
                **{n: getattr(snapshot, n) for n in _names(IntradaySnapshot)},
            )
            return bool(rows)

        return self._pg.run(work)

    def insert_intraday_many(self, snapshots: Sequence[IntradaySnapshot]) -> int:
        """Store several snapshots in one transaction; returns how many were new.

        Why: the MTM cycle writes a row per follower every 30 s, and one
        transaction per row (a round trip each for BEGIN, INSERT, COMMIT) was
        most of a 1,000-follower cycle. Idempotent like ``insert_intraday``:
        a row whose (follower, snapshot_time) exists is skipped, so a retried
        batch (``Postgres.run`` retries once on a lost connection) or a second
        mark of the same slot writes nothing twice. Multi-row INSERTs of at
        most ``_BATCH_ROWS`` keep each statement under PostgreSQL's parameter
        limit.
        """
        names = _names(IntradaySnapshot)
        rows = list(snapshots)

        def work(con: Connection) -> int:
            inserted = 0
            for start in range(0, len(rows), _BATCH_ROWS):
                chunk = rows[start : start + _BATCH_ROWS]
                params: dict[str, Any] = {}
                values: list[str] = []
                for i, snapshot in enumerate(chunk):
                    values.append("(" + ", ".join(f":{n}_{i}" for n in names) + ")")
                    params.update({f"{n}_{i}": getattr(snapshot, n) for n in names})
                returned = con.run(
                    f"""
                    INSERT INTO pnl_intraday ({", ".join(names)})
                    VALUES {", ".join(values)}
                    ON CONFLICT (follower_id, snapshot_time) DO NOTHING
                    RETURNING id
                    """,
                    **params,
                )
                inserted += len(returned or [])
            return inserted

        return self._pg.run(work) if rows else 0

    def intraday_for_day(self, follower_id: str, trading_date: date) -> list[IntradaySnapshot]:
        """A follower's snapshots of a day in time order (for drawdown/profit extremes)."""
        cols = ", ".join(_names(IntradaySnapshot))

        def work(con: Connection) -> list[IntradaySnapshot]:
            rows = con.run(
                f"SELECT {cols} FROM pnl_intraday WHERE follower_id = :f AND trading_date = :d"
                " ORDER BY snapshot_time",
                f=follower_id,
                d=trading_date,
            )
            return _build(IntradaySnapshot, con, rows)

        return self._pg.run(work)

    def latest_intraday(self, follower_id: str, trading_date: date) -> IntradaySnapshot | None:
        """The last snapshot of a follower's day, if any."""
        cols = ", ".join(_names(IntradaySnapshot))

        def work(con: Connection) -> list[IntradaySnapshot]:
            rows = con.run(
                f"SELECT {cols} FROM pnl_intraday WHERE follower_id = :f AND trading_date = :d"
                " ORDER BY snapshot_time DESC LIMIT 1",
                f=follower_id,
                d=trading_date,
            )
            return _build(IntradaySnapshot, con, rows)

        found = self._pg.run(work)
        return found[0] if found else None

    # -- daily ------------------------------------------------------------

    def upsert_daily(self, daily: DailyPnl) -> bool:
        """Write a day's rollup; False if refused because a finalized row exists and
        this one is provisional (the final 16:30 figures win over late estimates)."""
        names = _names(DailyPnl)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names[2:])

        def work(con: Connection) -> bool:
            rows = con.run(
                f"""
                INSERT INTO pnl_daily ({", ".join(names)})
                VALUES ({", ".join(":" + n for n in names)})
                ON CONFLICT (follower_id, trading_date) DO UPDATE SET {updates},
                    updated_at = now()
                WHERE NOT pnl_daily.finalized OR EXCLUDED.finalized
                RETURNING follower_id
                """,
                **{n: getattr(daily, n) for n in names},
            )
            return bool(rows)

        return self._pg.run(work)

    def get_daily(self, follower_id: str, trading_date: date) -> DailyPnl | None:
        """One follower's day, or None."""
        found = self._daily(
            "WHERE follower_id = :f AND trading_date = :d", f=follower_id, d=trading_date
        )
        return found[0] if found else None

    def daily_for_month(self, follower_id: str, month: date) -> list[DailyPnl]:
        """A follower's daily rows of a month, in date order."""
        first = month_start(month)
        return self._daily(
            "WHERE follower_id = :f AND trading_date >= :s"
            " AND trading_date < (CAST(:s AS DATE) + INTERVAL '1 month')"
            " ORDER BY trading_date",
            f=follower_id,
            s=first,
        )

    def previous_close(self, follower_id: str, before: date) -> DailyPnl | None:
        """The follower's last finalized day before ``before`` (its closing P&L opens the next)."""
        found = self._daily(
            "WHERE follower_id = :f AND trading_date < :d AND finalized"
            " ORDER BY trading_date DESC LIMIT 1",
            f=follower_id,
            d=before,
        )
        return found[0] if found else None

    def days_to_roll_up(self, until: date, since: date | None = None) -> list[tuple[str, date]]:
        """(follower_id, trading_date) with snapshots or fills on or before ``until``
        but no finalized daily row: what the daily rollup still owes (catch-up)."""
        rows = self._pg.query(
            """
            SELECT s.follower_id, s.trading_date FROM (
                SELECT follower_id, trading_date FROM pnl_intraday
                UNION
                SELECT follower_id, trading_date FROM fills WHERE exec_time IS NOT NULL
            ) AS s
            LEFT JOIN pnl_daily d
                ON d.follower_id = s.follower_id AND d.trading_date = s.trading_date
            WHERE s.trading_date <= :until
              AND (CAST(:since AS DATE) IS NULL OR s.trading_date >= :since)
              AND (d.finalized IS NULL OR NOT d.finalized)
            ORDER BY s.trading_date, s.follower_id
            """,
            until=until,
            since=since,
        )
        return [(str(r[0]), r[1]) for r in rows]

    def _daily(self, where: str, **params: Any) -> list[DailyPnl]:
        sql = f"SELECT {', '.join(_names(DailyPnl))} FROM pnl_daily {where}"

        def work(con: Connection) -> list[DailyPnl]:
            return _build(DailyPnl, con, con.run(sql, **params))

        return self._pg.run(work)

    # -- monthly ----------------------------------------------------------

    def upsert_monthly(self, monthly: MonthlyPnl) -> None:
        """Write (or rewrite) a follower's month; re-running converges."""
        names = _names(MonthlyPnl)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names[2:])

        def work(con: Connection) -> None:
            con.run(
                f"""
                INSERT INTO pnl_monthly ({", ".join(names)})
                VALUES ({", ".join(":" + n for n in names)})
                ON CONFLICT (follower_id, month) DO UPDATE SET {updates}, updated_at = now()
                """,
                **{n: getattr(monthly, n) for n in names},
            )

        self._pg.run(work)

    def get_monthly(self, follower_id: str, month: date) -> MonthlyPnl | None:
        """One follower's month, or None."""
        sql = (
            f"SELECT {', '.join(_names(MonthlyPnl))} FROM pnl_monthly"
            " WHERE follower_id = :f AND month = :m"
        )

        def work(con: Connection) -> list[MonthlyPnl]:
            return _build(MonthlyPnl, con, con.run(sql, f=follower_id, m=month_start(month)))

        found = self._pg.run(work)
        return found[0] if found else None

    def months_to_roll_up(self, before_month: date) -> list[tuple[str, date]]:
        """(follower_id, month) of months before ``before_month`` that have finalized
        daily rows but no monthly row, or no commission statement (catch-up)."""
        rows = self._pg.query(
            """
            WITH months AS (
                SELECT DISTINCT follower_id,
                    CAST(date_trunc('month', trading_date) AS DATE) AS month
                FROM pnl_daily
                WHERE finalized AND trading_date < :before
            )
            SELECT s.follower_id, s.month FROM months s
            WHERE NOT EXISTS (
                    SELECT 1 FROM pnl_monthly m
                    WHERE m.follower_id = s.follower_id AND m.month = s.month)
               OR NOT EXISTS (
                    SELECT 1 FROM commission_monthly c
                    WHERE c.follower_id = s.follower_id AND c.month = s.month)
            ORDER BY s.month, s.follower_id
            """,
            before=month_start(before_month),
        )
        return [(str(r[0]), r[1]) for r in rows]

    # -- commission statements -------------------------------------------

    def upsert_commission(self, statement: CommissionStatement) -> bool:
        """Write a month's statement; False if it is already sent or paid (then frozen).

        The paid/sent flags and their timestamps are never written here.
        """
        names = [
            n
            for n in _names(CommissionStatement)
            if n not in ("paid", "sent", "paid_at", "sent_at")
        ]
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names[2:])

        def work(con: Connection) -> bool:
            rows = con.run(
                f"""
                INSERT INTO commission_monthly ({", ".join(names)})
                VALUES ({", ".join(":" + n for n in names)})
                ON CONFLICT (follower_id, month) DO UPDATE SET {updates}, updated_at = now()
                WHERE NOT commission_monthly.paid AND NOT commission_monthly.sent
                RETURNING follower_id
                """,
                **{n: getattr(statement, n) for n in names},
            )
            return bool(rows)

        return self._pg.run(work)

    def get_commission(self, follower_id: str, month: date) -> CommissionStatement | None:
        """One statement, or None."""
        found = self._commissions(
            "WHERE follower_id = :f AND month = :m", f=follower_id, m=month_start(month)
        )
        return found[0] if found else None

    def commissions_for_month(
        self, month: date, *, unsent_only: bool = False
    ) -> list[CommissionStatement]:
        """Every follower's statement for a month (optionally only those not yet sent)."""
        where = "WHERE month = :m" + (" AND NOT sent" if unsent_only else "")
        return self._commissions(where + " ORDER BY follower_id", m=month_start(month))

    def mark_sent(self, follower_id: str, month: date, at: datetime) -> bool:
        """Record that the statement went out; False if unknown or already sent."""
        return self._mark("sent", follower_id, month, at)

    def mark_paid(self, follower_id: str, month: date, at: datetime) -> bool:
        """Record the payment; False if unknown or already paid."""
        return self._mark("paid", follower_id, month, at)

    def _mark(self, flag: str, follower_id: str, month: date, at: datetime) -> bool:
        if at.tzinfo is None:
            raise ValueError(f"{flag}_at must be timezone-aware")

        def work(con: Connection) -> bool:
            rows = con.run(
                f"UPDATE commission_monthly SET {flag} = TRUE, {flag}_at = :at, updated_at = now()"
                f" WHERE follower_id = :f AND month = :m AND NOT {flag} RETURNING follower_id",
                at=at,
                f=follower_id,
                m=month_start(month),
            )
            return bool(rows)

        return self._pg.run(work)

    def _commissions(self, where: str, **params: Any) -> list[CommissionStatement]:
        sql = f"SELECT {', '.join(_names(CommissionStatement))} FROM commission_monthly {where}"

        def work(con: Connection) -> list[CommissionStatement]:
            return _build(CommissionStatement, con, con.run(sql, **params))

        return self._pg.run(work)
