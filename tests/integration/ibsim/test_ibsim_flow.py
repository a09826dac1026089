"""The whole trading path against ibsim with each real client library.

Connect, qualify, option chain, snapshot and streaming quotes with greeks,
what-if margin on a combo, a credit spread bought as a BAG at a negative limit
and filled, a working order modified in place and cancelled, the spread closed
with a MKT combo, and positions / portfolio / account summary / executions /
commission reports agreeing with each other. Any message either library drops
(decoder error) or any request left hanging (timeout) fails the test.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import pytest
from ibsim_testkit import (
    ACCOUNT,
    EXPIRY,
    LIBRARIES,
    capture_library_logs,
    connect,
    credit_spread,
    option,
    run,
    running_sim,
    wait_until,
)

from ibsim.accounts import COMMISSION_PER_CONTRACT


def _summary(values: list[Any]) -> dict[str, float]:
    out = {}
    for v in values:
        if v.account == ACCOUNT and v.currency == "USD" and v.tag != "Currency":
            out[v.tag] = float(v.value)
    return out


async def _flow(lib: ModuleType) -> None:
    async with running_sim() as sim:
        ib = await connect(lib, sim.port, client_id=1)
        master = await connect(lib, sim.port, client_id=0)
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, *_: errors.append((req_id, code))
        assert ib.client.serverVersion() == 176
        assert ib.managedAccounts() == [ACCOUNT]

        # -- qualify a 0DTE put and call; an unknown strike stays unqualified --------
        short_put, long_put, call = (
            option(lib, 480, "P"),
            option(lib, 475, "P"),
            option(lib, 485, "C"),
        )
        await ib.qualifyContractsAsync(short_put, long_put, call)
        for c in (short_put, long_put, call):
            assert c.conId > 0
            assert c.lastTradeDateOrContractMonth == EXPIRY
            assert c.multiplier == "100"
        assert short_put.localSymbol == f"QQQ   {EXPIRY[2:]}P00480000"
        unknown = option(lib, 480.5, "P")
        await ib.qualifyContractsAsync(unknown)
        assert unknown.conId == 0
        stock = lib.Stock("QQQ", "SMART", "USD")
        await ib.qualifyContractsAsync(stock)
        assert stock.conId == 320227571

        # -- option chain ---------------------------------------------------------
        chains = await ib.reqSecDefOptParamsAsync("QQQ", "", "STK", stock.conId)
        smart = next(c for c in chains if c.exchange == "SMART")
        assert EXPIRY in smart.expirations
        assert {475.0, 480.0, 485.0} <= set(smart.strikes)
        assert smart.multiplier == "100"

        # -- snapshot quotes with greeks --------------------------------------------
        put_t, call_t = await ib.reqTickersAsync(short_put, call)
        for ticker, sign in ((put_t, -1), (call_t, 1)):
            assert 0 <= ticker.bid < ticker.ask
            assert ticker.ask - ticker.bid <= 0.05 + 1e-9
            greeks = ticker.modelGreeks
            assert greeks is not None
            assert greeks.undPrice == pytest.approx(sim.market.spot(), abs=2.0)
            assert 0 < sign * greeks.delta < 1
            assert greeks.impliedVol > 0
            assert greeks.gamma > 0

        # -- streaming quotes: option and the combo ------------------------------------
        streaming = ib.reqMktData(short_put, "106")
        bag = credit_spread(lib, long_put, short_put)
        bag_t = ib.reqMktData(bag)
        assert await wait_until(
            lambda: (
                streaming.modelGreeks is not None
                and not math.isnan(bag_t.ask)
                and not math.isnan(bag_t.bid)
            )
        )
        assert bag_t.bid < bag_t.ask < 0  # credit spread: negative combo price
        assert streaming.bidGreeks is not None and streaming.askGreeks is not None
        assert await wait_until(lambda: streaming.impliedVolatility > 0)

        # -- what-if margin of the combo ---------------------------------------------
        qty = 2
        limit = round(bag_t.ask, 2)
        state = await ib.whatIfOrderAsync(bag, lib.LimitOrder("BUY", qty, limit))
        credit = -limit
        assert float(state.initMarginChange) == pytest.approx((5 - credit) * 100 * qty, abs=0.01)
        assert float(state.equityWithLoanBefore) == pytest.approx(100_000, abs=1)
        assert len(ib.openTrades()) == 0  # what-if leaves no order behind
        assert sim.broker.live_orders(ACCOUNT) == []

        # -- the credit spread: BUY BAG at a negative, marketable limit ---------------
        entry = lib.LimitOrder("BUY", qty, round(bag_t.ask + 0.05, 2), orderRef="sp-entry")
        entry.tif = "DAY"
        trade = ib.placeOrder(bag, entry)
        assert await wait_until(trade.isDone)
        assert trade.orderStatus.status == "Filled"
        assert trade.orderStatus.filled == qty
        assert trade.orderStatus.avgFillPrice < 0
        assert trade.orderStatus.avgFillPrice <= entry.lmtPrice + 1e-9
        assert await wait_until(lambda: len(trade.fills) == 2)
        assert await wait_until(lambda: all(f.commissionReport.execId for f in trade.fills))
        by_con = {f.contract.conId: f for f in trade.fills}
        assert by_con[long_put.conId].execution.side == "BOT"
        assert by_con[short_put.conId].execution.side == "SLD"
        leg_sum = by_con[long_put.conId].execution.price - by_con[short_put.conId].execution.price
        assert leg_sum == pytest.approx(trade.orderStatus.avgFillPrice, abs=1e-6)
        for f in trade.fills:
            assert f.execution.orderRef == "sp-entry"
            assert f.execution.permId == trade.order.permId
            assert f.execution.shares == qty
            assert f.commissionReport.commission == pytest.approx(COMMISSION_PER_CONTRACT * qty)

        # positions and portfolio agree with the fills
        assert await wait_until(lambda: len(ib.positions()) == 2)
        positions = {p.contract.conId: p for p in ib.positions()}
        assert positions[long_put.conId].position == qty
        assert positions[short_put.conId].position == -qty
        long_px = by_con[long_put.conId].execution.price
        short_px = by_con[short_put.conId].execution.price
        assert positions[long_put.conId].avgCost == pytest.approx(long_px * 100 + 0.65)
        assert positions[short_put.conId].avgCost == pytest.approx(short_px * 100 - 0.65)
        assert await wait_until(lambda: len(ib.portfolio()) == 2)
        for item in ib.portfolio():
            assert item.position == positions[item.contract.conId].position
            assert item.averageCost == pytest.approx(positions[item.contract.conId].avgCost)
        summary = _summary(await ib.accountSummaryAsync())
        assert summary["InitMarginReq"] > 0
        values = _summary(ib.accountValues())
        assert values["NetLiquidation"] == pytest.approx(
            values["TotalCashValue"] + values["OptionMarketValue"], abs=0.02
        )
        marked = sum(item.marketValue for item in ib.portfolio())
        assert values["OptionMarketValue"] == pytest.approx(marked, abs=0.02)
        assert summary["AvailableFunds"] == pytest.approx(
            summary["EquityWithLoanValue"] - summary["InitMarginReq"], abs=0.02
        )

        # -- a working order: modified in place, then cancelled ------------------------
        far = round(bag_t.bid - 0.50, 2)  # asks far more credit than offered: rests
        working = lib.LimitOrder("BUY", 1, far, orderRef="sp-rung")
        wtrade = ib.placeOrder(bag, working)
        assert await wait_until(lambda: wtrade.orderStatus.status == "Submitted")
        order_id, perm_id = working.orderId, wtrade.order.permId
        assert perm_id > 0
        new_limit = round(far + 0.01, 2)
        working.lmtPrice = new_limit
        ib.placeOrder(bag, working)
        assert await wait_until(lambda: any(e.message == "Modified" for e in wtrade.log))
        assert working.orderId == order_id
        assert wtrade.order.permId == perm_id

        def master_view() -> Any:
            for t in master.openTrades():
                if t.order.permId == perm_id:
                    return t
            return None

        # client 0 decodes the openOrder from the wire: it shows the new price
        assert await wait_until(
            lambda: master_view() is not None and master_view().order.lmtPrice == new_limit
        )
        assert master_view().order.orderId == order_id
        assert master_view().order.clientId == 1
        assert sim.broker.orders[(ACCOUNT, 1, order_id)].ticket.lmt_price == new_limit

        open_trades = await ib.reqAllOpenOrdersAsync()
        assert [t.order.permId for t in open_trades] == [perm_id]
        ib.cancelOrder(working)
        assert await wait_until(lambda: wtrade.orderStatus.status == "Cancelled")
        assert await wait_until(lambda: (order_id, 202) in errors)

        # -- close the spread with a MKT combo -------------------------------------------
        close = lib.MarketOrder("SELL", qty, orderRef="sp-close")
        ctrade = ib.placeOrder(bag, close)
        assert await wait_until(ctrade.isDone)
        assert ctrade.orderStatus.status == "Filled"
        assert await wait_until(lambda: len(ib.positions()) == 0)
        assert await wait_until(lambda: len(ib.portfolio()) == 0)

        # -- executions, commission reports and the account agree -------------------------
        fills = await ib.reqExecutionsAsync()
        ours = [f for f in fills if f.execution.orderRef in ("sp-entry", "sp-close")]
        assert len(ours) == 4
        assert {f.execution.orderRef for f in ours} == {"sp-entry", "sp-close"}
        assert await wait_until(lambda: all(f.commissionReport.execId for f in ctrade.fills))
        commissions = sum(f.commissionReport.commission for f in trade.fills + ctrade.fills)
        assert commissions == pytest.approx(4 * COMMISSION_PER_CONTRACT * qty)
        realized = sum(f.commissionReport.realizedPNL for f in ctrade.fills)
        assert await wait_until(
            lambda: abs(_summary(ib.accountValues()).get("RealizedPnL", 1e9) - realized) < 0.02
        )
        values = _summary(ib.accountValues())
        assert values["NetLiquidation"] - 100_000 == pytest.approx(realized, abs=0.02)
        summary = _summary(await ib.accountSummaryAsync())  # kept current by the subscription
        assert summary["NetLiquidation"] == pytest.approx(values["NetLiquidation"], abs=0.02)
        assert summary["InitMarginReq"] == 0
        sells = await ib.reqExecutionsAsync(lib.ExecutionFilter(side="SELL"))
        assert {f.execution.side for f in sells} == {"SLD"}
        assert len(sells) == 2  # the short leg of the entry and the long leg of the close
        completed = await ib.reqCompletedOrdersAsync(False)
        statuses = {t.order.orderRef: t.orderStatus.status for t in completed}
        assert statuses == {"sp-entry": "Filled", "sp-rung": "Cancelled", "sp-close": "Filled"}
        now = await ib.reqCurrentTimeAsync()
        assert abs((now - sim.clock.now()).total_seconds()) < 120

        master.disconnect()
        ib.disconnect()


@pytest.mark.parametrize("lib_name", sorted(LIBRARIES))
def test_full_trading_flow(lib_name: str) -> None:
    with capture_library_logs() as logs:
        run(_flow(LIBRARIES[lib_name]))
    assert logs.problems() == []
