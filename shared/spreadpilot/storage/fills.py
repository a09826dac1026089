"""The ``fills`` table: IB executions and their commission reports, by execId.

Why the two halves are written separately: IB delivers ``execDetails`` and
``commissionReport`` as separate messages, in either order, and either may be
re-delivered after a reconnect (``reqExecutions``). Keying both on ``exec_id``
with upserts makes every delivery idempotent and order-independent, so the
sidecar can simply write whatever it receives, whenever it receives it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from spreadpilot.adapters.postgres import Connection, Postgres, rows_as_dicts

Side = Literal["BOT", "SLD"]

# IB reports "no realized P&L" as DBL_MAX rather than leaving the field empty.
_IB_UNSET_THRESHOLD = 1e300


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Exact decimal from IB's floats: via ``str`` so 0.7 stays 0.7, not 0.6999..."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return Decimal(str(value))


def ib_optional_amount(value: float | Decimal | None) -> Decimal | None:
    """IB's 'unset' sentinels (DBL_MAX, NaN, inf) become None."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) >= _IB_UNSET_THRESHOLD:
        return None
    return to_decimal(value)


@dataclass(frozen=True)
class ExecutionFill:
    """The execution half of a fill, as the sidecar maps it from an IB ``Execution``.

    ``exec_time`` must be timezone-aware; ``trading_date`` is the New York
    trading date the caller derived from it (not re-derived here, so that one
    calendar decides it).
    """

    exec_id: str
    follower_id: str
    account: str
    symbol: str
    sec_type: str
    side: Side
    qty: Decimal
    price: Decimal
    exec_time: datetime
    trading_date: date
    order_ref: str | None = None
    perm_id: int | None = None
    order_id: int | None = None
    con_id: int | None = None
    right: Literal["C", "P"] | None = None
    strike: Decimal | None = None
    expiry: date | None = None
    multiplier: int | None = None

    def __post_init__(self) -> None:
        if not self.exec_id:
            raise ValueError("exec_id is required")
        if self.side not in ("BOT", "SLD"):
            raise ValueError(f"side must be BOT or SLD, got {self.side!r}")
        if self.qty <= 0:
            raise ValueError(f"qty must be positive, got {self.qty}")
        if self.exec_time.tzinfo is None:
            raise ValueError("exec_time must be timezone-aware")
        if self.right not in (None, "C", "P"):
            raise ValueError(f"right must be C or P, got {self.right!r}")


@dataclass(frozen=True)
class FillRow:
    """A stored fill: the execution half plus the commission half (None until reported)."""

    exec_id: str
    follower_id: str
    account: str
    symbol: str
    sec_type: str
    side: Side
    qty: Decimal
    price: Decimal
    exec_time: datetime
    trading_date: date
    order_ref: str | None
    perm_id: int | None
    order_id: int | None
    con_id: int | None
    right: Literal["C", "P"] | None
    strike: Decimal | None
    expiry: date | None
    multiplier: int | None
    commission: Decimal | None
    commission_currency: str | None
    realized_pnl_ib: Decimal | None

    @property
    def signed_qty(self) -> Decimal:
        """+qty for a buy, -qty for a sale: what P&L and position math want."""
        return self.qty if self.side == "BOT" else -self.qty


_COLUMNS = (
    "exec_id, follower_id, account, symbol, sec_type, side, qty, price, exec_time, "
    'trading_date, order_ref, perm_id, order_id, con_id, "right", strike, expiry, '
    "multiplier, commission, commission_currency, realized_pnl_ib"
)


def _row(record: dict[str, Any]) -> FillRow:
    return FillRow(**record)


class FillsRepository:
    """Idempotent writes of fills and the reads the P&L jobs need."""

    def __init__(self, pg: Postgres) -> None:
        self._pg = pg

    def upsert_execution(self, fill: ExecutionFill) -> bool:
        """Store the execution half; True if this call wrote it, False if already there.

        A re-delivered execution changes nothing (the first write wins: IB
        never amends an execution in place, a correction has a new execId). A
        row created earlier by the commission report is completed.
        """

        def work(con: Connection) -> bool:
            rows = con.run(
                """
                INSERT INTO fills (exec_id, follower_id, account, symbol, sec_type, side, qty,
                    price, exec_time, trading_date, order_ref, perm_id, order_id, con_id,
                    "right", strike, expiry, multiplier)
                VALUES (:exec_id, :follower_id, :account, :symbol, :sec_type, :side, :qty,
                    :price, :exec_time, :trading_date, :order_ref, :perm_id, :order_id,
                    :con_id, :right, :strike, :expiry, :multiplier)
                ON CONFLICT (exec_id) DO UPDATE SET
                    follower_id = EXCLUDED.follower_id, account = EXCLUDED.account,
                    symbol = EXCLUDED.symbol, sec_type = EXCLUDED.sec_type,
                    side = EXCLUDED.side, qty = EXCLUDED.qty, price = EXCLUDED.price,
                    exec_time = EXCLUDED.exec_time, trading_date = EXCLUDED.trading_date,
                    order_ref = EXCLUDED.order_ref, perm_id = EXCLUDED.perm_id,
                    order_id = EXCLUDED.order_id, con_id = EXCLUDED.con_id,
                    "right" = EXCLUDED."right", strike = EXCLUDED.strike,
                    expiry = EXCLUDED.expiry, multiplier = EXCLUDED.multiplier,
                    updated_at = now()
                WHERE fills.exec_time IS NULL
                RETURNING exec_id
                """,
                exec_id=fill.exec_id,
                follower_id=fill.follower_id,
                account=fill.account,
                symbol=fill.symbol,
                sec_type=fill.sec_type,
                side=fill.side,
                qty=fill.qty,
                price=fill.price,
                exec_time=fill.exec_time,
                trading_date=fill.trading_date,
                order_ref=fill.order_ref,
                perm_id=fill.perm_id,
                order_id=fill.order_id,
                con_id=fill.con_id,
                right=fill.right,
                strike=fill.strike,
                expiry=fill.expiry,
                multiplier=fill.multiplier,
            )
            return bool(rows)

        return self._pg.run(work)

    def attach_commission(
        self,
        exec_id: str,
        commission: float | Decimal,
        currency: str,
        realized_pnl_ib: float | Decimal | None = None,
    ) -> bool:
        """Store the commission report for ``exec_id``; True if anything changed.

        Works before the execution arrives (a row holding only the commission
        is created and completed later) and is a no-op when repeated.
        """
        amount = ib_optional_amount(commission)
        if amount is None:
            raise ValueError(f"commission for {exec_id} is not a finite amount: {commission!r}")
        realized = ib_optional_amount(realized_pnl_ib)

        def work(con: Connection) -> bool:
            rows = con.run(
                """
                INSERT INTO fills (exec_id, commission, commission_currency, realized_pnl_ib)
                VALUES (:exec_id, :commission, :currency, :realized)
                ON CONFLICT (exec_id) DO UPDATE SET
                    commission = EXCLUDED.commission,
                    commission_currency = EXCLUDED.commission_currency,
                    realized_pnl_ib = EXCLUDED.realized_pnl_ib,
                    updated_at = now()
                WHERE fills.commission IS DISTINCT FROM EXCLUDED.commission
                   OR fills.commission_currency IS DISTINCT FROM EXCLUDED.commission_currency
                   OR fills.realized_pnl_ib IS DISTINCT FROM EXCLUDED.realized_pnl_ib
                RETURNING exec_id
                """,
                exec_id=exec_id,
                commission=amount,
                currency=currency,
                realized=realized,
            )
            return bool(rows)

        return self._pg.run(work)

    def get(self, exec_id: str) -> FillRow | None:
        """The complete fill, or None if unknown or only its commission has arrived."""
        found = self._select("WHERE exec_id = :exec_id AND exec_time IS NOT NULL", exec_id=exec_id)
        return found[0] if found else None

    def list_for_follower(
        self,
        follower_id: str,
        trading_date: date | None = None,
        *,
        start: date | None = None,
        end: date | None = None,
    ) -> list[FillRow]:
        """A follower's fills in execution order: one trading date, or ``start..end`` inclusive."""
        if trading_date is not None:
            start = end = trading_date
        return self._select(
            "WHERE follower_id = :follower_id"
            " AND (CAST(:start AS DATE) IS NULL OR trading_date >= :start)"
            " AND (CAST(:end AS DATE) IS NULL OR trading_date <= :end)"
            " ORDER BY trading_date, exec_time, exec_id",
            follower_id=follower_id,
            start=start,
            end=end,
        )

    def list_for_date(self, trading_date: date) -> list[FillRow]:
        """Every follower's fills of one trading date, by follower then time."""
        return self._select(
            "WHERE trading_date = :d ORDER BY follower_id, exec_time, exec_id", d=trading_date
        )

    def list_by_order_ref(self, order_ref: str) -> list[FillRow]:
        """Fills of one order (``orderRef`` is derived from signal and follower)."""
        return self._select(
            "WHERE order_ref = :ref AND exec_time IS NOT NULL ORDER BY exec_time, exec_id",
            ref=order_ref,
        )

    def missing_commission(self, trading_date: date) -> list[FillRow]:
        """Fills of a date still waiting for their commission report."""
        return self._select(
            "WHERE trading_date = :d AND commission IS NULL ORDER BY exec_time", d=trading_date
        )

    def orphan_commission_ids(self) -> list[str]:
        """execIds with a commission report but no execution yet (to re-request)."""
        rows = self._pg.query("SELECT exec_id FROM fills WHERE exec_time IS NULL ORDER BY exec_id")
        return [str(r[0]) for r in rows]

    def follower_dates(self, start: date, end: date) -> list[tuple[str, date]]:
        """Distinct (follower_id, trading_date) with fills in ``start..end``."""
        rows = self._pg.query(
            "SELECT DISTINCT follower_id, trading_date FROM fills"
            " WHERE exec_time IS NOT NULL AND trading_date BETWEEN :s AND :e"
            " ORDER BY trading_date, follower_id",
            s=start,
            e=end,
        )
        return [(str(r[0]), r[1]) for r in rows]

    def _select(self, where: str, **params: Any) -> list[FillRow]:
        sql = f"SELECT {_COLUMNS} FROM fills {where}"

        def work(con: Connection) -> list[dict[str, Any]]:
            rows = con.run(sql, **params)
            return rows_as_dicts(con, rows)

        records: Sequence[dict[str, Any]] = self._pg.run(work)
        return [_row(r) for r in records if r["exec_time"] is not None]
