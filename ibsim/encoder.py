"""Server -> client messages, one function per message type.

Each function returns the message's fields as wire strings (message id first),
laid out for the negotiated server version exactly as the client decoders of
ib_async 2.x and ib_insync 0.9.86 read them. The decoders are positional and
strict: a missing or extra field, or ``"1.0"`` where an integer is expected,
drops the whole message silently, so every function here is pinned by golden
tests and exercised by the integration tests against both libraries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from spreadpilot.clock import NEW_YORK

from .contracts import STOCK_CON_ID, Instrument
from .framing import (
    UNSET_DOUBLE_TEXT,
    fmt_bool,
    fmt_float,
    fmt_int,
    fmt_price,
    fmt_qty,
)
from .orders import Execution, MarginState, OrderTicket, WorkingOrder

# tick types
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE = 0, 1, 2, 3, 4, 5
HIGH, LOW, VOLUME, CLOSE = 6, 7, 8, 9
BID_OPTION, ASK_OPTION, LAST_OPTION, MODEL_OPTION = 10, 11, 12, 13
OPTION_IMPLIED_VOL = 24  # tickGeneric, sent when generic tick list 106 is requested


# -- session --------------------------------------------------------------------


def connection_time(moment: datetime) -> str:
    """``20250115 09:30:00 EST``: the handshake's connection time, New York."""
    local = moment.astimezone(NEW_YORK)
    return f"{local:%Y%m%d %H:%M:%S} {local.tzname()}"


def managed_accounts(accounts: list[str]) -> list[str]:
    return ["15", "1", ",".join(accounts)]


def next_valid_id(order_id: int) -> list[str]:
    return ["9", "1", fmt_int(order_id)]


def error(req_id: int, code: int, text: str, version: int, reject_json: str = "") -> list[str]:
    fields = ["4", "2", fmt_int(req_id), fmt_int(code), text]
    if version >= 166:
        fields.append(reject_json)
    return fields


def current_time(moment: datetime) -> list[str]:
    return ["49", "1", str(int(moment.timestamp()))]


# -- contracts ------------------------------------------------------------------


def _trading_hours(day: date, close: datetime) -> str:
    close_local = close.astimezone(NEW_YORK)
    return f"{day:%Y%m%d}:0930-{day:%Y%m%d}:{close_local:%H%M}"


def contract_details(
    req_id: int, inst: Instrument, version: int, session_close: datetime | None = None
) -> list[str]:
    """contractDetails (10). ``session_close`` fills the trading hours fields."""
    hours = ""
    if session_close is not None:
        day = session_close.astimezone(NEW_YORK).date()
        hours = _trading_hours(day, session_close)
    option = inst.is_option
    fields = ["10"]
    if version < 164:
        fields.append("8")
    fields += [
        fmt_int(req_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        fmt_float(inst.strike),
        inst.right,
        inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.symbol if option else "NMS",  # marketName
        inst.trading_class,
        fmt_int(inst.con_id),
        "0.01",  # minTick
    ]
    if version < 164:
        fields.append("1")  # mdSizeMultiplier
    fields += [
        inst.multiplier_text,
        "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,"
        "GAT,GTC,GTD,LMT,MKT,NONALGO,OCA,SCALE,SCALERST,SNAPMID,SNAPMKT,STP,STPLMT,"
        "TRAIL,TRAILLIT,TRAILLMT,WHATIF",  # orderTypes
        "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,NASDAQBX,MIAX,GEMINI,"
        "EDGX,MERCURY,PEARL,EMERALD,MEMX,IBUSOPT"
        if option
        else "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,NASDAQ,DRCTEDGE,BEX,BATS,EDGEA,IEX",
        "1",  # priceMagnifier
        fmt_int(STOCK_CON_ID) if option else "0",  # underConId
        "INVESCO QQQ TRUST SERIES 1",  # longName
        inst.primary_exchange,
        inst.expiry.strftime("%Y%m") if inst.expiry else "",  # contractMonth
        "" if option else "Financial",  # industry
        "" if option else "Equity Fund",  # category
        "" if option else "Growth-Large Cap",  # subcategory
        "US/Eastern",
        hours,  # tradingHours
        hours,  # liquidHours
        "",  # evRule
        "",  # evMultiplier
        "0",  # secIdList count
        "1" if not option else "2",  # aggGroup
        inst.symbol if option else "",  # underSymbol
        "STK" if option else "",  # underSecType
        "32,109" if option else "26,26,26,26,26,26,26,26,26,26,26,26,26,26",  # marketRuleIds
        inst.last_trade_date,  # realExpirationDate
        "" if option else "ETF",  # stockType
    ]
    if version == 163:
        fields.append("1")  # suggestedSizeIncrement
    if version >= 164:
        fields += ["1", "1", "1"]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields


def contract_details_end(req_id: int) -> list[str]:
    return ["52", "1", fmt_int(req_id)]


def sec_def_opt_params(
    req_id: int,
    exchange: str,
    under_con_id: int,
    trading_class: str,
    multiplier: str,
    expirations: list[str],
    strikes: list[float],
) -> list[str]:
    return [
        "75",
        fmt_int(req_id),
        exchange,
        fmt_int(under_con_id),
        trading_class,
        multiplier,
        str(len(expirations)),
        *expirations,
        str(len(strikes)),
        *[fmt_float(s) for s in strikes],
    ]


def sec_def_opt_params_end(req_id: int) -> list[str]:
    return ["76", fmt_int(req_id)]


# -- market data ----------------------------------------------------------------


def market_data_type(req_id: int, data_type: int) -> list[str]:
    return ["58", "1", fmt_int(req_id), fmt_int(data_type)]


def tick_req_params(req_id: int, min_tick: float = 0.01, bbo_exchange: str = "") -> list[str]:
    return ["81", fmt_int(req_id), fmt_float(min_tick), bbo_exchange, "3"]


def tick_price(
    req_id: int, tick_type: int, price: float, size: float, attrib: int = 0
) -> list[str]:
    """tickPrice (1): exactly 7 fields; bid/ask always carry a non-zero size."""
    return ["1", "6", fmt_int(req_id), str(tick_type), fmt_price(price), fmt_qty(size), str(attrib)]


def tick_size(req_id: int, tick_type: int, size: float) -> list[str]:
    return ["2", "6", fmt_int(req_id), str(tick_type), fmt_qty(size)]


def tick_generic(req_id: int, tick_type: int, value: float) -> list[str]:
    return ["45", "6", fmt_int(req_id), str(tick_type), fmt_float(value)]


def tick_string(req_id: int, tick_type: int, value: str) -> list[str]:
    return ["46", "6", fmt_int(req_id), str(tick_type), value]


def tick_option_computation(
    req_id: int,
    tick_type: int,
    implied_vol: float | None,
    delta: float | None,
    opt_price: float | None,
    gamma: float | None,
    vega: float | None,
    theta: float | None,
    und_price: float | None,
    attrib: int = 1,
) -> list[str]:
    """tickOptionComputation (21): exactly 12 fields; -1/-2 mean "not computed"."""

    def value(v: float | None, missing: str) -> str:
        return missing if v is None else fmt_float(v)

    return [
        "21",
        fmt_int(req_id),
        str(tick_type),
        str(attrib),
        value(implied_vol, "-1"),
        value(delta, "-2"),
        value(opt_price, "-1"),
        "0.0",  # pvDividend
        value(gamma, "-2"),
        value(vega, "-2"),
        value(theta, "-2"),
        value(und_price, "-1"),
    ]


def tick_snapshot_end(req_id: int) -> list[str]:
    return ["57", "1", fmt_int(req_id)]


# -- account and portfolio -------------------------------------------------------


def account_value(key: str, value: str, currency: str, account: str) -> list[str]:
    return ["6", "2", key, value, currency, account]


def portfolio_value(
    inst: Instrument,
    position: float,
    market_price: float,
    market_value: float,
    avg_cost: float,
    unrealized: float,
    realized: float,
    account: str,
) -> list[str]:
    """updatePortfolio (7): exactly 20 fields; primaryExchange, no exchange."""
    return [
        "7",
        "8",
        fmt_int(inst.con_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        fmt_float(inst.strike),
        inst.right,
        inst.multiplier_text,
        inst.primary_exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
        fmt_qty(position),
        fmt_float(round(market_price, 6)),
        fmt_float(round(market_value, 2)),
        fmt_float(round(avg_cost, 6)),
        fmt_float(round(unrealized, 2)),
        fmt_float(round(realized, 2)),
        account,
    ]


def account_time(moment: datetime) -> list[str]:
    return ["8", "1", f"{moment.astimezone(NEW_YORK):%H:%M}"]


def account_download_end(account: str) -> list[str]:
    return ["54", "1", account]


def position(account: str, inst: Instrument, quantity: float, avg_cost: float) -> list[str]:
    """position (61): exactly 16 fields; IB leaves the exchange empty here."""
    return [
        "61",
        "3",
        account,
        fmt_int(inst.con_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        fmt_float(inst.strike),
        inst.right,
        inst.multiplier_text,
        "",  # exchange
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
        fmt_qty(quantity),
        fmt_float(round(avg_cost, 6)),
    ]


def position_end() -> list[str]:
    return ["62", "1"]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[str]:
    return ["63", "1", fmt_int(req_id), account, tag, value, currency]


def account_summary_end(req_id: int) -> list[str]:
    return ["64", "1", fmt_int(req_id)]


def account_update_multi(
    req_id: int, account: str, model_code: str, key: str, value: str, currency: str
) -> list[str]:
    return ["73", "1", fmt_int(req_id), account, model_code, key, value, currency]


def account_update_multi_end(req_id: int) -> list[str]:
    return ["74", "1", fmt_int(req_id)]


# -- orders ---------------------------------------------------------------------


def _contract_fields(order: WorkingOrder | None, ticket: OrderTicket) -> list[str]:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
    currency, localSymbol, tradingClass: the qualified contract for single-leg
    orders, the client's own description for combos."""
    if order is not None and len(order.legs) == 1 and ticket.contract.sec_type.upper() != "BAG":
        inst = order.legs[0].instrument
        return [
            fmt_int(inst.con_id),
            inst.symbol,
            inst.sec_type,
            inst.last_trade_date,
            fmt_float(inst.strike),
            inst.right,
            inst.multiplier_text,
            ticket.contract.exchange or inst.exchange,
            inst.currency,
            inst.local_symbol,
            inst.trading_class,
        ]
    c = ticket.contract
    return [
        fmt_int(c.con_id),
        c.symbol or "QQQ",
        c.sec_type,
        c.last_trade_date,
        fmt_float(c.strike or 0.0),
        c.right,
        c.multiplier,
        c.exchange or "SMART",
        c.currency or "USD",
        c.local_symbol,
        c.trading_class,
    ]


def combo_legs_description(ticket: OrderTicket) -> str:
    """``conId|ratio`` pairs, SELL legs with a negative ratio (documented choice)."""
    parts = []
    for leg in ticket.legs:
        ratio = leg.ratio if leg.action.upper() == "BUY" else -leg.ratio
        parts.append(f"{leg.con_id}|{ratio}")
    return ",".join(parts)


def _legs(ticket: OrderTicket) -> list[str]:
    fields = [str(len(ticket.legs))]
    for leg in ticket.legs:
        fields += [
            fmt_int(leg.con_id),
            fmt_int(leg.ratio),
            leg.action,
            leg.exchange,
            fmt_int(leg.open_close),
            fmt_int(leg.short_sale_slot),
            leg.designated_location,
            fmt_int(leg.exempt_code),
        ]
    return fields


def _combo_extras(ticket: OrderTicket) -> list[str]:
    fields = [str(len(ticket.order_combo_prices))]
    fields += [fmt_float(p) for p in ticket.order_combo_prices]
    fields.append(str(len(ticket.smart_combo_params)))
    for tag, value in ticket.smart_combo_params:
        fields += [tag, value]
    return fields


def _money(value: float) -> str:
    return f"{value:.2f}"


def open_order(
    ticket: OrderTicket,
    status: str,
    version: int,
    *,
    order: WorkingOrder | None = None,
    client_id: int = 0,
    perm_id: int = 0,
    account: str = "",
    what_if: bool = False,
    margin: MarginState | None = None,
) -> list[str]:
    """openOrder (5) at ``version``: 144 fields for a 2-leg combo at 176, 136 at 157.

    Normal orders carry TWS's unset double in the margin fields. A what-if
    reply carries numeric margins (ib_async ``float()``s initMarginChange and
    ignores the reply while it is unset) and the estimated commission.
    """
    if order is not None:
        client_id, perm_id, account = order.client_id, order.perm_id, order.account
    t = ticket
    is_combo = t.contract.sec_type.upper() == "BAG"
    fields = ["5", fmt_int(t.order_id)]
    fields += _contract_fields(order, t)
    fields += [
        t.action,
        fmt_qty(t.total_quantity),
        t.order_type,
        fmt_price(t.lmt_price) if t.lmt_price is not None else "",
        fmt_float(t.aux_price) if t.aux_price is not None else "",
        t.tif,
        t.oca_group,
        account,
        t.open_close,
        fmt_int(t.origin),
        t.order_ref,
        fmt_int(client_id),
        fmt_int(perm_id),
        fmt_bool(t.outside_rth),
        "0",  # hidden
        "0",  # discretionaryAmt
        "",  # goodAfterTime
        "",  # deprecated sharesAllocation
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
    ]
    if version < 177:
        fields.append("")  # faProfile
    fields += [
        "",  # modelCode
        "",  # goodTillDate
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        "0",  # auctionStrategy
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "",  # displaySize
        "0",  # blockOrder
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        "3",  # ocaType
        "0",  # eTradeOnly
        "0",  # firmQuoteOnly
        "",  # nbboPriceCap
        fmt_int(t.parent_id),
        "0",  # triggerMethod
        "",  # volatility
        "0",  # volatilityType
        "",  # deltaNeutralOrderType (empty: no delta-neutral block follows)
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType
        "",  # trailStopPrice
        "",  # trailingPercent
        "",  # basisPoints
        "",  # basisPointsType
        combo_legs_description(t) if is_combo else "",
    ]
    fields += _legs(t) if is_combo else ["0"]
    fields += _combo_extras(t) if is_combo else ["0", "0"]
    fields += [
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement (unset: no scale block follows)
        "",  # hedgeType (empty: no hedgeParam follows)
        "0",  # optOutSmartRouting
        "",  # clearingAccount
        "IB",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy (empty: no algo params follow)
        "0",  # solicited
        fmt_bool(what_if),
        status,
    ]
    if margin is not None:
        fields += [
            _money(margin.init_before),
            _money(margin.maint_before),
            _money(margin.ewl_before),
            _money(margin.init_change),
            _money(margin.maint_change),
            _money(margin.ewl_change),
            _money(margin.init_after),
            _money(margin.maint_after),
            _money(margin.ewl_after),
            fmt_float(margin.commission),
            fmt_float(margin.commission),
            fmt_float(margin.commission),
            "USD",
        ]
    else:
        fields += [UNSET_DOUBLE_TEXT] * 9 + ["", "", "", ""]
    fields += [
        "",  # warningText
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditions count
        "None",  # adjustedOrderType
        "",  # triggerPrice
        "",  # trailStopPrice
        "",  # lmtPriceOffset
        "",  # adjustedStopPrice
        "",  # adjustedStopLimitPrice
        "",  # adjustedTrailingAmount
        "0",  # adjustableTrailingUnit
        "",  # softDollarTier name
        "",  # softDollarTier value
        "",  # softDollarTier displayName
        "",  # cashQty
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "0",  # discretionaryUpToLimitPrice
        "0",  # usePriceMgmtAlgo
    ]
    if version >= 159:
        fields.append("")  # duration
    if version >= 160:
        fields.append("")  # postToAts
    if version >= 162:
        fields.append("0")  # autoCancelParent
    if version >= 170:
        fields += ["", "", "", "", ""]  # minTradeQty .. midOffsetAtHalf
    return fields


def open_order_end() -> list[str]:
    return ["53", "1"]


def order_status(order: WorkingOrder, status: str | None = None) -> list[str]:
    """orderStatus (3): echoes the owning clientId (trades are keyed by it)."""
    return [
        "3",
        fmt_int(order.order_id),
        status or order.status,
        fmt_qty(order.filled),
        fmt_qty(order.remaining),
        fmt_float(order.avg_fill_price),
        fmt_int(order.perm_id),
        fmt_int(order.ticket.parent_id),
        fmt_float(order.last_fill_price),
        fmt_int(order.client_id),
        "",  # whyHeld
        "",  # mktCapPrice
    ]


def completed_order(order: WorkingOrder, version: int) -> list[str]:
    """completedOrder (101): no orderId or clientId; 113 fields for a 2-leg combo at 176."""
    t = order.ticket
    is_combo = t.contract.sec_type.upper() == "BAG"
    fields = ["101"]
    fields += _contract_fields(order, t)
    fields += [
        t.action,
        fmt_qty(t.total_quantity),
        t.order_type,
        fmt_price(t.lmt_price) if t.lmt_price is not None else "",
        fmt_float(t.aux_price) if t.aux_price is not None else "",
        t.tif,
        t.oca_group,
        order.account,
        t.open_close,
        fmt_int(t.origin),
        t.order_ref,
        fmt_int(order.perm_id),
        fmt_bool(t.outside_rth),
        "0",  # hidden
        "0",  # discretionaryAmt
        "",  # goodAfterTime
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
    ]
    if version < 177:
        fields.append("")  # faProfile
    fields += [
        "",  # modelCode
        "",  # goodTillDate
        "",  # rule80A
        "",  # percentOffset
        "",  # settlingFirm
        "0",  # shortSaleSlot
        "",  # designatedLocation
        "-1",  # exemptCode
        "",  # startingPrice
        "",  # stockRefPrice
        "",  # delta
        "",  # stockRangeLower
        "",  # stockRangeUpper
        "",  # displaySize
        "0",  # sweepToFill
        "0",  # allOrNone
        "",  # minQty
        "3",  # ocaType
        "0",  # triggerMethod
        "",  # volatility
        "0",  # volatilityType
        "",  # deltaNeutralOrderType
        "",  # deltaNeutralAuxPrice
        "0",  # continuousUpdate
        "0",  # referencePriceType
        "",  # trailStopPrice
        "",  # trailingPercent
        combo_legs_description(t) if is_combo else "",
    ]
    fields += _legs(t) if is_combo else ["0"]
    fields += _combo_extras(t) if is_combo else ["0", "0"]
    completed = order.completed_time or datetime.now(UTC)
    fields += [
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement
        "",  # hedgeType
        "",  # clearingAccount
        "IB",  # clearingIntent
        "0",  # notHeld
        "0",  # deltaNeutralContract present
        "",  # algoStrategy
        "0",  # solicited
        order.status,
        "0",  # randomizeSize
        "0",  # randomizePrice
        "0",  # conditions count
        "",  # trailStopPrice
        "",  # lmtPriceOffset
        "",  # cashQty
        "0",  # dontUseAutoPriceForHedge
        "0",  # isOmsContainer
        "",  # autoCancelDate
        fmt_qty(order.filled),  # filledQuantity
        "0",  # refFuturesConId
        "0",  # autoCancelParent
        "",  # shareholder
        "0",  # imbalanceOnly
        "0",  # routeMarketableToBbo
        "0",  # parentPermId
        f"{completed.astimezone(UTC):%Y%m%d %H:%M:%S} UTC",  # completedTime
        order.completed_status or order.status,
    ]
    if version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def completed_orders_end() -> list[str]:
    return ["102"]


def exec_details(req_id: int, execution: Execution, version: int) -> list[str]:
    """execDetails (11): exactly 31 fields below 178 (ib_insync requires that count)."""
    inst = execution.instrument
    fields = [
        "11",
        fmt_int(req_id),
        fmt_int(execution.order_id),
        fmt_int(inst.con_id),
        inst.symbol,
        inst.sec_type,
        inst.last_trade_date,
        fmt_float(inst.strike),
        inst.right,
        inst.multiplier_text,
        inst.exchange,
        inst.currency,
        inst.local_symbol,
        inst.trading_class,
        execution.exec_id,
        f"{execution.time.astimezone(UTC):%Y%m%d %H:%M:%S} UTC",
        execution.account,
        "CBOE" if inst.is_option else "NASDAQ",  # execution venue
        execution.side,
        fmt_qty(execution.shares),
        fmt_price(execution.price),
        fmt_int(execution.perm_id),
        fmt_int(execution.client_id),
        "0",  # liquidation
        fmt_qty(execution.cum_qty),
        fmt_float(execution.avg_price),
        execution.order_ref,
        "",  # evRule
        "",  # evMultiplier
        "",  # modelCode
        fmt_int(execution.liquidity),
    ]
    if version >= 178:
        fields.append("0")  # pendingPriceRevision
    return fields


def exec_details_end(req_id: int) -> list[str]:
    return ["55", "1", fmt_int(req_id)]


def commission_report(execution: Execution) -> list[str]:
    """commissionReport (59): exactly 8 fields; realized P&L unset on opening fills."""
    realized = UNSET_DOUBLE_TEXT if execution.realized is None else fmt_float(execution.realized)
    return [
        "59",
        "1",
        execution.exec_id,
        fmt_float(execution.commission),
        "USD",
        realized,
        UNSET_DOUBLE_TEXT,  # yield
        "",  # yieldRedemptionDate
    ]
