"""Every encoder's output fed to the real decoders of ib_async and ib_insync.

The decoders catch their own exceptions and log them (the message is then
silently lost), so each case runs with the decoder's logger captured and fails
on any record, and checks that the wrapper callback received the right values.
Layouts are exercised at the server versions where they change.
"""

from __future__ import annotations

import logging
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import ib_async.decoder
import ib_insync.decoder
import pytest

from ibsim import encoder as enc
from ibsim.contracts import STOCK
from ibsim.framing import UNSET_DOUBLE
from ibsim.market import expiry_close

from .samples import (
    ACCOUNT,
    DAY,
    LONG_PUT,
    MARGIN,
    MOMENT,
    SHORT_PUT,
    bag_order,
    execution,
    option_order,
)

DECODERS = {"ib_async": ib_async.decoder.Decoder, "ib_insync": ib_insync.decoder.Decoder}
VERSIONS = (157, 163, 166, 170, 176)


class Recorder:
    """Stands in for the library's Wrapper and records every callback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.ib = SimpleNamespace(TimezoneTWS=None)
        self.defaultTimezone = UTC

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def decode(lib: str, version: int, fields: list[str]) -> tuple[str, tuple[Any, ...]]:
    """Decode one message; exactly one wrapper callback and no logged error."""
    recorder = Recorder()
    decoder = DECODERS[lib](recorder, version)
    handler = _Collect()
    logger = logging.getLogger(decoder.logger.name)
    logger.addHandler(handler)
    try:
        decoder.interpret(list(fields))
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == []
    assert len(recorder.calls) == 1, recorder.calls
    return recorder.calls[0]


LIBS = sorted(DECODERS)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_session_messages(lib: str, version: int) -> None:
    assert decode(lib, version, enc.managed_accounts([ACCOUNT])) == ("managedAccounts", (ACCOUNT,))
    assert decode(lib, version, enc.next_valid_id(17)) == ("nextValidId", (17,))
    name, args = decode(lib, version, enc.error(12, 202, "Order Canceled - reason:", version))
    assert name == "error" and args[:3] == (12, 202, "Order Canceled - reason:")
    assert decode(lib, version, enc.current_time(MOMENT)) == (
        "currentTime",
        (int(MOMENT.timestamp()),),
    )


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_contract_details(lib: str, version: int) -> None:
    name, (req_id, cd) = decode(
        lib, version, enc.contract_details(7, SHORT_PUT, version, expiry_close(DAY))
    )
    assert (name, req_id) == ("contractDetails", 7)
    c = cd.contract
    assert (c.conId, c.symbol, c.secType, c.strike, c.right) == (
        SHORT_PUT.con_id,
        "QQQ",
        "OPT",
        480.0,
        "P",
    )
    assert c.lastTradeDateOrContractMonth == "20250115"
    assert c.multiplier == "100"
    assert c.localSymbol == "QQQ   250115P00480000"
    assert cd.underConId == STOCK.con_id
    assert cd.minTick == 0.01
    name, (_, cd) = decode(lib, version, enc.contract_details(8, STOCK, version))
    assert cd.contract.primaryExchange == "NASDAQ"
    assert cd.stockType == "ETF"
    assert decode(lib, version, enc.contract_details_end(7)) == ("contractDetailsEnd", (7,))


@pytest.mark.parametrize("lib", LIBS)
def test_option_chain(lib: str) -> None:
    name, args = decode(
        lib,
        176,
        enc.sec_def_opt_params(
            9, "SMART", STOCK.con_id, "QQQ", "100", ["20250115"], [479.0, 480.0]
        ),
    )
    assert name == "securityDefinitionOptionParameter"
    assert args == (9, "SMART", str(STOCK.con_id), "QQQ", "100", ["20250115"], [479.0, 480.0])
    assert decode(lib, 176, enc.sec_def_opt_params_end(9)) == (
        "securityDefinitionOptionParameterEnd",
        (9,),
    )


@pytest.mark.parametrize("lib", LIBS)
def test_market_data(lib: str) -> None:
    assert decode(lib, 176, enc.tick_price(4, enc.BID, 1.05, 12)) == (
        "priceSizeTick",
        (4, 1, 1.05, 12.0),
    )
    assert decode(lib, 176, enc.tick_price(5, enc.ASK, -0.8, 3)) == (
        "priceSizeTick",
        (5, 2, -0.8, 3.0),
    )
    assert decode(lib, 176, enc.tick_size(4, enc.VOLUME, 1500)) == ("tickSize", (4, 8, 1500.0))
    assert decode(lib, 176, enc.tick_generic(4, 49, 0.0)) == ("tickGeneric", (4, 49, 0.0))
    assert decode(lib, 176, enc.tick_string(4, 45, "17")) == ("tickString", (4, 45, "17"))
    name, args = decode(
        lib,
        176,
        enc.tick_option_computation(4, 13, 0.22, -0.5, 1.1, 0.14, 0.05, -2.2, 480.0),
    )
    assert name == "tickOptionComputation"
    assert args == (4, 13, 1, 0.22, -0.5, 1.1, 0.0, 0.14, 0.05, -2.2, 480.0)
    _, args = decode(
        lib, 176, enc.tick_option_computation(4, 10, None, None, None, None, None, None, None)
    )
    assert args[3:] == (-1.0, -2.0, -1.0, 0.0, -2.0, -2.0, -2.0, -1.0)
    assert decode(lib, 176, enc.tick_snapshot_end(4)) == ("tickSnapshotEnd", (4,))
    assert decode(lib, 176, enc.market_data_type(4, 1)) == ("marketDataType", (4, 1))
    name, args = decode(lib, 176, enc.tick_req_params(4))
    assert name == "tickReqParams" and args[:2] == (4, 0.01)


@pytest.mark.parametrize("lib", LIBS)
def test_account_and_portfolio(lib: str) -> None:
    assert decode(lib, 176, enc.account_value("NetLiquidation", "1.00", "USD", ACCOUNT)) == (
        "updateAccountValue",
        ("NetLiquidation", "1.00", "USD", ACCOUNT),
    )
    name, args = decode(
        lib, 176, enc.portfolio_value(SHORT_PUT, -2, 1.07, -214.0, 104.35, -5.3, 0.0, ACCOUNT)
    )
    assert name == "updatePortfolio"
    assert args[0].conId == SHORT_PUT.con_id
    assert args[1:] == (-2.0, 1.07, -214.0, 104.35, -5.3, 0.0, ACCOUNT)
    _, args = decode(
        lib, 176, enc.portfolio_value(STOCK, 200, 480.0, 96000.0, 485.0, -1000, 0, ACCOUNT)
    )
    assert args[0].secType == "STK" and args[1] == 200
    assert decode(lib, 176, enc.account_time(MOMENT))[0] == "updateAccountTime"
    assert decode(lib, 176, enc.account_download_end(ACCOUNT)) == ("accountDownloadEnd", (ACCOUNT,))
    name, args = decode(lib, 176, enc.position(ACCOUNT, SHORT_PUT, -2, 104.35))
    assert name == "position"
    assert (args[0], args[1].conId, args[2], args[3]) == (ACCOUNT, SHORT_PUT.con_id, -2.0, 104.35)
    assert decode(lib, 176, enc.position_end()) == ("positionEnd", ())
    assert decode(lib, 176, enc.account_summary(21, ACCOUNT, "AvailableFunds", "9.00", "USD")) == (
        "accountSummary",
        (21, ACCOUNT, "AvailableFunds", "9.00", "USD"),
    )
    assert decode(lib, 176, enc.account_summary_end(21)) == ("accountSummaryEnd", (21,))
    assert decode(
        lib, 176, enc.account_update_multi(22, ACCOUNT, "", "NetLiquidation", "1.00", "USD")
    ) == ("accountUpdateMulti", (22, ACCOUNT, "", "NetLiquidation", "1.00", "USD"))
    assert decode(lib, 176, enc.account_update_multi_end(22)) == ("accountUpdateMultiEnd", (22,))


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_open_order_combo(lib: str, version: int) -> None:
    order = bag_order()
    name, (order_id, contract, decoded, state) = decode(
        lib, version, enc.open_order(order.ticket, "Submitted", version, order=order)
    )
    assert (name, order_id) == ("openOrder", 12)
    assert contract.secType == "BAG"
    legs = [(leg.conId, leg.ratio, leg.action) for leg in contract.comboLegs]
    assert legs == [(LONG_PUT.con_id, 1, "BUY"), (SHORT_PUT.con_id, 1, "SELL")]
    assert (decoded.orderId, decoded.clientId, decoded.permId) == (12, 1, 100000001)
    assert (decoded.action, decoded.totalQuantity, decoded.orderType) == ("BUY", 2.0, "LMT")
    assert decoded.lmtPrice == -0.8
    assert decoded.orderRef == "sp-1"
    assert decoded.account == ACCOUNT
    assert decoded.whatIf is False
    assert state.status == "Submitted"
    assert float(state.initMarginChange) == UNSET_DOUBLE
    assert decode(lib, version, enc.open_order_end()) == ("openOrderEnd", ())


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_what_if_reply(lib: str, version: int) -> None:
    ticket = option_order().ticket
    ticket.what_if = True
    name, (_, _, decoded, state) = decode(
        lib,
        version,
        enc.open_order(
            ticket,
            "PreSubmitted",
            version,
            client_id=3,
            account=ACCOUNT,
            what_if=True,
            margin=MARGIN,
        ),
    )
    assert name == "openOrder"
    assert decoded.whatIf is True
    assert decoded.orderType == "MKT"
    assert float(state.initMarginChange) == 840.0
    assert float(state.equityWithLoanAfter) == 99997.4
    assert state.commission == 2.6


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_order_status_executions_commissions(lib: str, version: int) -> None:
    order = bag_order("Filled")
    order.filled = 2
    order.avg_fill_price = -0.8
    order.last_fill_price = -0.8
    name, args = decode(lib, version, enc.order_status(order))
    assert name == "orderStatus"
    assert args == (12, "Filled", 2.0, 0.0, -0.8, 100000001, 0, -0.8, 1, "", 0.0)
    name, (req_id, contract, ex) = decode(lib, version, enc.exec_details(-1, execution(), version))
    assert (name, req_id) == ("execDetails", -1)
    assert contract.conId == SHORT_PUT.con_id
    assert (ex.execId, ex.side, ex.shares, ex.price) == (
        "0000e0d5.05f5e101.01.01",
        "SLD",
        2.0,
        1.05,
    )
    assert (ex.orderId, ex.permId, ex.clientId, ex.orderRef) == (12, 100000001, 1, "sp-1")
    assert ex.time == MOMENT
    assert decode(lib, version, enc.exec_details_end(30)) == ("execDetailsEnd", (30,))
    name, (report,) = decode(lib, version, enc.commission_report(execution(realized=81.4)))
    assert (report.execId, report.commission, report.realizedPNL) == (
        "0000e0d5.05f5e101.01.01",
        1.3,
        81.4,
    )
    _, (opening,) = decode(lib, version, enc.commission_report(execution()))
    assert opening.realizedPNL == UNSET_DOUBLE


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("version", VERSIONS)
def test_completed_orders(lib: str, version: int) -> None:
    for order in (bag_order("Filled"), option_order()):
        order.status = "Filled"
        order.filled = order.ticket.total_quantity
        order.completed_time = MOMENT
        name, (contract, decoded, state) = decode(lib, version, enc.completed_order(order, version))
        assert name == "completedOrder"
        assert contract.secType == order.ticket.contract.sec_type
        assert decoded.permId == order.perm_id
        assert decoded.orderRef == order.ticket.order_ref
        assert decoded.filledQuantity == order.filled
        assert state.status == "Filled"
        assert state.completedStatus == "Filled"
    assert decode(lib, version, enc.completed_orders_end()) == ("completedOrdersEnd", ())
