"""Client -> server parsing, fed with what the real client libraries write.

placeOrder has conditional sections (combo legs, delta-neutral, scale, hedge,
algo, delta-neutral contract) in front of the whatIf flag; each is exercised
through both libraries' own encoders at several server versions.
"""

from __future__ import annotations

from typing import Any

import ib_async
import ib_insync
import pytest

from ibsim import decoder as dec
from ibsim.framing import (
    VersionRange,
    negotiate,
    parse_version_range,
)

LIBS = {"ib_async": ib_async, "ib_insync": ib_insync}


def wire(lib_name: str, version: int, call: str, *args: Any) -> list[str]:
    """The fields a library's Client writes for ``call(*args)`` at ``version``."""
    lib = LIBS[lib_name]
    client = lib.client.Client(lib.wrapper.Wrapper(lib.IB()))
    client._serverVersion = version
    sent: list[str] = []
    client.isConnected = lambda: True  # type: ignore[method-assign]
    client.sendMsg = lambda msg: sent.append(msg)  # type: ignore[method-assign]
    getattr(client, call)(*args)
    assert len(sent) == 1
    return sent[0].split("\0")[:-1]


def bag(lib: Any) -> Any:
    return lib.Contract(
        symbol="QQQ",
        secType="BAG",
        exchange="SMART",
        currency="USD",
        comboLegs=[
            lib.ComboLeg(conId=101, ratio=1, action="BUY", exchange="SMART"),
            lib.ComboLeg(conId=102, ratio=1, action="SELL", exchange="SMART"),
        ],
    )


CASES = ["plain", "dn_order", "scale", "hedge", "algo", "dn_contract", "combo_params"]


def _order(lib: Any, case: str, what_if: bool) -> tuple[Any, Any]:
    contract = bag(lib)
    order = lib.LimitOrder("BUY", 3, -0.85, orderRef="sp-ref", account="DU0000001")
    order.whatIf = what_if
    if case == "dn_order":
        order.deltaNeutralOrderType = "LMT"
        order.deltaNeutralAuxPrice = 1.0
    elif case == "scale":
        order.scalePriceIncrement = 0.05
        order.scaleInitLevelSize = 1
    elif case == "hedge":
        order.hedgeType = "D"
        order.hedgeParam = "0.5"
    elif case == "algo":
        order.algoStrategy = "Adaptive"
        order.algoParams = [lib.TagValue("adaptivePriority", "Normal")]
    elif case == "dn_contract":
        contract.deltaNeutralContract = lib.DeltaNeutralContract(conId=1, delta=0.5, price=480.0)
    elif case == "combo_params":
        order.smartComboRoutingParams = [lib.TagValue("NonGuaranteed", "1")]
        order.orderComboLegs = [lib.OrderComboLeg(price=1.0), lib.OrderComboLeg(price=0.1)]
    return contract, order


@pytest.mark.parametrize("lib_name", sorted(LIBS))
@pytest.mark.parametrize("version", [157, 166, 176])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("what_if", [False, True])
def test_place_order_is_walked_to_the_what_if_flag(
    lib_name: str, version: int, case: str, what_if: bool
) -> None:
    lib = LIBS[lib_name]
    contract, order = _order(lib, case, what_if)
    fields = wire(lib_name, version, "placeOrder", 42, contract, order)
    ticket = dec.parse_place_order(fields, version)
    assert ticket.what_if is what_if
    assert ticket.order_id == 42
    assert (ticket.action, ticket.total_quantity, ticket.order_type) == ("BUY", 3.0, "LMT")
    assert ticket.lmt_price == -0.85
    assert ticket.order_ref == "sp-ref"
    assert ticket.account == "DU0000001"
    assert [(leg.con_id, leg.ratio, leg.action) for leg in ticket.legs] == [
        (101, 1, "BUY"),
        (102, 1, "SELL"),
    ]


@pytest.mark.parametrize("version", [176, 177, 178])
def test_place_order_single_option_mkt_newer_layouts(version: int) -> None:
    contract = ib_async.Option("QQQ", "20250115", 480, "P", "SMART", conId=555)
    fields = wire("ib_async", version, "placeOrder", 7, contract, ib_async.MarketOrder("SELL", 2))
    ticket = dec.parse_place_order(fields, version)
    assert (ticket.order_type, ticket.lmt_price, ticket.action) == ("MKT", None, "SELL")
    assert ticket.contract.con_id == 555
    assert ticket.contract.strike == 480.0
    assert ticket.legs == []
    assert ticket.what_if is False


@pytest.mark.parametrize("lib_name", sorted(LIBS))
def test_other_requests(lib_name: str) -> None:
    lib = LIBS[lib_name]
    opt = lib.Option("QQQ", "20250115", 480, "P", "SMART")
    req = dec.parse_contract_details(wire(lib_name, 176, "reqContractDetails", 5, opt))
    assert (req.req_id, req.contract.sec_type, req.contract.strike) == (5, "OPT", 480.0)
    assert req.contract.last_trade_date == "20250115"
    md = dec.parse_market_data(wire(lib_name, 176, "reqMktData", 6, bag(lib), "", True, False, []))
    assert md.req_id == 6 and md.snapshot is True
    assert [leg.con_id for leg in md.legs] == [101, 102]
    sd = dec.parse_sec_def_opt_params(
        wire(lib_name, 176, "reqSecDefOptParams", 8, "QQQ", "", "STK", 320227571)
    )
    assert (sd.req_id, sd.underlying_symbol, sd.underlying_con_id) == (8, "QQQ", 320227571)
    flt = lib.ExecutionFilter(clientId=3, acctCode="DU0000001", side="BUY")
    ex = dec.parse_executions(wire(lib_name, 176, "reqExecutions", 9, flt))
    assert (ex.req_id, ex.client_id, ex.account, ex.side) == (9, 3, "DU0000001", "BUY")
    summary = dec.parse_account_summary(
        wire(lib_name, 176, "reqAccountSummary", 10, "All", "NetLiquidation,AvailableFunds")
    )
    assert summary.tags == ["NetLiquidation", "AvailableFunds"]
    multi = dec.parse_account_updates_multi(
        wire(lib_name, 176, "reqAccountUpdatesMulti", 11, "DU0000001", "", False)
    )
    assert (multi.req_id, multi.account) == (11, "DU0000001")
    upd = dec.parse_account_updates(wire(lib_name, 176, "reqAccountUpdates", True, "DU0000001"))
    assert upd.subscribe and upd.account == "DU0000001"
    assert dec.parse_cancel_order(wire(lib_name, 176, "cancelOrder", 12, "")).order_id == 12


def test_version_negotiation() -> None:
    assert parse_version_range("v157..178") == VersionRange(157, 178, "")
    assert parse_version_range("v100..157 +PACEAPI") == VersionRange(100, 157, "+PACEAPI")
    assert negotiate(VersionRange(157, 178)) == 176
    assert negotiate(VersionRange(157, 176)) == 176
    assert negotiate(VersionRange(100, 157)) == 157
    assert negotiate(VersionRange(100, 150)) is None
    assert negotiate(VersionRange(177, 180)) is None


def test_forgiving_field_reader() -> None:
    r = dec.FieldReader(["", "5", "5.0", "", "1", "Infinite", "x"])
    assert r.int() == 0
    assert r.int() == 5
    assert r.int() == 5
    assert r.float() is None
    assert r.bool() is True
    assert r.float() == float("inf")
    with pytest.raises(dec.RequestError):
        r.int()
    assert r.str() == ""  # past the end reads as empty
