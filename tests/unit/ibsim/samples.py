"""Fixed objects the encoder tests render: a 2-leg credit spread order, executions."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ibsim.contracts import Chain, ContractQuery, Instrument
from ibsim.orders import (
    ComboLegSpec,
    Execution,
    Leg,
    MarginState,
    OrderTicket,
    WorkingOrder,
)

DAY = date(2025, 1, 15)
CHAIN = Chain(480.0, DAY)
SHORT_PUT: Instrument = CHAIN.option(DAY, 480, "P")
LONG_PUT: Instrument = CHAIN.option(DAY, 475, "P")
ACCOUNT = "DU0000001"
MOMENT = datetime(2025, 1, 15, 15, 1, 2, tzinfo=UTC)


def bag_ticket(what_if: bool = False) -> OrderTicket:
    return OrderTicket(
        order_id=12,
        contract=ContractQuery(symbol="QQQ", sec_type="BAG", exchange="SMART", currency="USD"),
        legs=[
            ComboLegSpec(LONG_PUT.con_id, 1, "BUY", "SMART"),
            ComboLegSpec(SHORT_PUT.con_id, 1, "SELL", "SMART"),
        ],
        action="BUY",
        total_quantity=2,
        order_type="LMT",
        lmt_price=-0.8,
        account=ACCOUNT,
        order_ref="sp-1",
        what_if=what_if,
    )


def bag_order(status: str = "Submitted") -> WorkingOrder:
    return WorkingOrder(
        ticket=bag_ticket(),
        client_id=1,
        perm_id=100000001,
        account=ACCOUNT,
        legs=[Leg(LONG_PUT, 1, 1), Leg(SHORT_PUT, 1, -1)],
        created=MOMENT,
        status=status,
    )


def option_order() -> WorkingOrder:
    ticket = OrderTicket(
        order_id=13,
        contract=ContractQuery(
            symbol="QQQ",
            sec_type="OPT",
            last_trade_date="20250115",
            strike=480.0,
            right="P",
            exchange="SMART",
            currency="USD",
        ),
        action="SELL",
        total_quantity=1,
        order_type="MKT",
        account=ACCOUNT,
        order_ref="tv-liq",
    )
    return WorkingOrder(
        ticket=ticket,
        client_id=3,
        perm_id=100000002,
        account=ACCOUNT,
        legs=[Leg(SHORT_PUT, 1, 1)],
        created=MOMENT,
        status="Submitted",
    )


def execution(realized: float | None = None) -> Execution:
    return Execution(
        exec_id="0000e0d5.05f5e101.01.01",
        order_id=12,
        client_id=1,
        perm_id=100000001,
        account=ACCOUNT,
        instrument=SHORT_PUT,
        side="SLD",
        shares=2.0,
        price=1.05,
        time=MOMENT,
        cum_qty=2.0,
        avg_price=1.05,
        order_ref="sp-1",
        commission=1.3,
        realized=realized,
    )


MARGIN = MarginState(
    init_before=0.0,
    maint_before=0.0,
    ewl_before=100000.0,
    init_change=840.0,
    maint_change=840.0,
    ewl_change=-2.6,
    init_after=840.0,
    maint_after=840.0,
    ewl_after=99997.4,
    commission=2.6,
)
