"""Pure tests of pricing, the market, accounts and the broker (no sockets)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from spreadpilot.clock import NEW_YORK, ManualClock

from ibsim.accounts import Account, Holding, margin_requirement
from ibsim.contracts import STOCK, Chain, ContractQuery, decode_option_con_id, occ_symbol
from ibsim.market import Market, Scenario
from ibsim.orders import (
    AccountChanged,
    Broker,
    ComboLegSpec,
    CommissionEvent,
    ExecReport,
    Leg,
    OrderError,
    OrderTicket,
    OrderUpdate,
    WhatIfResult,
    allocate_leg_prices,
    combo_quote,
)
from ibsim.pricing import Smile, black_scholes, quote_around

DAY = date(2025, 1, 15)
START = datetime(2025, 1, 15, 10, 0, tzinfo=NEW_YORK)
ACCOUNT = "DU0000001"


# -- pricing ----------------------------------------------------------------------


def test_put_call_parity_and_decay_to_intrinsic() -> None:
    for spot in (470.0, 480.0, 490.0):
        call = black_scholes(spot, 480, 120, 0.2, "C")
        put = black_scholes(spot, 480, 120, 0.2, "P")
        assert call.price - put.price == pytest.approx(spot - 480, abs=1e-9)
        assert call.delta - put.delta == pytest.approx(1.0)
    values = [black_scholes(480, 480, m, 0.2, "P").price for m in (360, 60, 10, 1)]
    assert values == sorted(values, reverse=True)
    assert black_scholes(480, 480, 0, 0.2, "P").price == 0.0
    assert black_scholes(470, 480, 0, 0.2, "P").price == 10.0
    assert black_scholes(470, 480, -5, 0.2, "P").delta == -1.0


def test_smile_and_penny_quotes() -> None:
    smile = Smile()
    assert smile.vol(480, 460) > smile.vol(480, 480) > smile.vol(480, 500)  # put skew
    assert smile.vol(480, 620) > smile.vol(480, 480)  # the far call wing lifts again
    for theo in (0.0, 0.004, 0.37, 1.1025, 3.3, 12.0):
        bid, ask = quote_around(theo)
        assert bid <= theo <= ask or bid == 0
        assert 0.01 <= round(ask - bid, 2) <= 0.05
        assert round(bid * 100) == pytest.approx(bid * 100)


# -- contracts and market ------------------------------------------------------------


def test_contract_ids_round_trip_and_matching() -> None:
    chain = Chain(480, DAY)
    put = chain.option(DAY, 480, "P")
    assert decode_option_con_id(put.con_id) == (DAY, 480.0, "P")
    assert chain.resolve(put.con_id) == put
    assert chain.resolve(STOCK.con_id) == STOCK
    assert put.local_symbol == occ_symbol(DAY, 480, "P") == "QQQ   250115P00480000"
    query = ContractQuery(symbol="QQQ", sec_type="OPT", last_trade_date="20250115", strike=480.0)
    assert {i.right for i in chain.match(query, DAY)} == {"C", "P"}
    query.right = "PUT"
    assert chain.match(query, DAY) == [put]
    query.strike = 480.5
    assert chain.match(query, DAY) == []
    assert chain.match(
        ContractQuery(local_symbol="QQQ   250115P00480000", sec_type="OPT"), DAY
    ) == [put]
    assert chain.match(ContractQuery(symbol="SPY", sec_type="STK"), DAY) == []
    assert DAY + timedelta(days=3) not in chain.expiries()  # a Saturday


def test_market_is_a_function_of_seed_and_time() -> None:
    a = Market(ManualClock(START), Chain(480, DAY), seed=3)
    b = Market(ManualClock(START), Chain(480, DAY), seed=3)
    c = Market(ManualClock(START), Chain(480, DAY), seed=4)
    moments = [START + timedelta(seconds=s) for s in (0, 5, 60, 3600)]
    assert [a.spot(m) for m in moments] == [b.spot(m) for m in moments]
    assert [a.spot(m) for m in moments] != [c.spot(m) for m in moments]
    # looking at a later time first does not change earlier prices
    late_first = Market(ManualClock(START), Chain(480, DAY), seed=3)
    late_first.spot(moments[-1])
    assert late_first.spot(moments[1]) == a.spot(moments[1])
    a.set_spot(470)
    assert a.spot() == pytest.approx(470)
    a.shift(-2)
    assert a.spot() == pytest.approx(468)


def test_scenario_keypoints() -> None:
    scenario = Scenario(spot=480, walk_vol=0, path=[("10:00", 480.0), ("11:00", 470.0)])
    market = Market(ManualClock(START), Chain(480, DAY), scenario=scenario)
    assert market.spot(START + timedelta(minutes=30)) == pytest.approx(475.0)
    assert market.spot(START + timedelta(hours=2)) == pytest.approx(470.0)


# -- accounts ---------------------------------------------------------------------------


def test_average_cost_and_realized_pnl_follow_ib() -> None:
    chain = Chain(480, DAY)
    put = chain.option(DAY, 480, "P")
    account = Account(ACCOUNT, 100_000)
    account.apply_fill(put, 1, 1.50, 0.65)
    assert account.positions[put.con_id].avg_cost == pytest.approx(150.65)
    account.apply_fill(put, -1, 2.00, 0.65)
    assert account.realized_pnl == pytest.approx(200 - 150.65 - 0.65)
    account.apply_fill(put, -2, 1.00, 1.30)
    assert account.positions[put.con_id].avg_cost == pytest.approx(99.35)
    result = account.apply_fill(put, 2, 0.40, 1.30)
    assert result.realized == pytest.approx(2 * 99.35 - 80 - 1.30)
    assert account.cash == pytest.approx(100_000 + account.realized_pnl)


def test_margin_requirement_shapes() -> None:
    chain = Chain(480, DAY)
    short, long_ = chain.option(DAY, 480, "P"), chain.option(DAY, 475, "P")
    spread = [Holding(long_, 2, 0.20), Holding(short, -2, 1.00)]
    assert margin_requirement(spread).initial == pytest.approx((5 - 0.80) * 100 * 2)
    assert margin_requirement([Holding(long_, 1, 0.20)]).initial == pytest.approx(20.0)
    assert margin_requirement([Holding(short, -1, 1.00)]).initial == pytest.approx(480 * 100 - 100)
    naked_call = chain.option(DAY, 485, "C")
    assert margin_requirement([Holding(naked_call, -1, 0.5)]).initial > 100_000
    assert margin_requirement([Holding(STOCK, 100, 480)]).initial == pytest.approx(24_000)


# -- broker ---------------------------------------------------------------------------


def _broker(seed: int = 1, equity: float = 100_000) -> tuple[Broker, ManualClock, Chain]:
    clock = ManualClock(START)
    chain = Chain(480, DAY)
    market = Market(clock, chain, seed=seed, scenario=Scenario(spot=480, walk_vol=0))
    broker = Broker(market, chain, {ACCOUNT: Account(ACCOUNT, equity)}, seed=seed)
    return broker, clock, chain


def _spread_ticket(chain: Chain, order_id: int, limit: float | None, qty: int = 1) -> OrderTicket:
    long_, short = chain.option(DAY, 475, "P"), chain.option(DAY, 480, "P")
    return OrderTicket(
        order_id=order_id,
        contract=ContractQuery(symbol="QQQ", sec_type="BAG", exchange="SMART", currency="USD"),
        legs=[ComboLegSpec(long_.con_id, 1, "BUY"), ComboLegSpec(short.con_id, 1, "SELL")],
        action="BUY",
        total_quantity=qty,
        order_type="LMT" if limit is not None else "MKT",
        lmt_price=limit,
        order_ref="ref",
    )


def test_combo_price_convention() -> None:
    broker, _, chain = _broker()
    legs = [Leg(chain.option(DAY, 475, "P"), 1, 1), Leg(chain.option(DAY, 480, "P"), 1, -1)]
    cq = combo_quote(broker.market, legs)
    long_q = broker.market.quote(legs[0].instrument)
    short_q = broker.market.quote(legs[1].instrument)
    assert cq.bid == pytest.approx(long_q.bid - short_q.ask)
    assert cq.ask == pytest.approx(long_q.ask - short_q.bid)
    assert cq.bid < cq.mid < cq.ask < 0
    for price in (cq.ask, cq.bid, -0.5, -2.0):
        prices = allocate_leg_prices(broker.market, legs, price)
        assert prices[0] - prices[1] == pytest.approx(price)
        assert min(prices) >= 0


def test_marketable_combo_fills_at_natural_and_respects_the_limit() -> None:
    broker, _, chain = _broker()
    legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
    assert legs is not None
    natural = combo_quote(broker.market, legs).ask
    events = broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, round(natural + 0.10, 2), qty=2))
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "OrderUpdate",
        "OrderUpdate",
        "ExecReport",
        "ExecReport",
        "OrderUpdate",
        "CommissionEvent",
        "CommissionEvent",
        "AccountChanged",
    ]
    final = events[4]
    assert isinstance(final, OrderUpdate)
    assert final.status == "Filled" and final.parts == ("status", "open")
    assert final.order.avg_fill_price == pytest.approx(natural)  # improved to natural
    first = events[0]
    assert isinstance(first, OrderUpdate) and first.order.filled == 0  # snapshot of its moment
    execs = [e.execution for e in events if isinstance(e, ExecReport)]
    assert [x.side for x in execs] == ["BOT", "SLD"]
    assert all(isinstance(e, CommissionEvent) for e in events[5:7])
    assert isinstance(events[-1], AccountChanged)


def test_resting_limit_below_mid_never_fills_and_between_fills_by_chance() -> None:
    broker, clock, chain = _broker()
    legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
    assert legs is not None
    cq = combo_quote(broker.market, legs)
    broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, round(cq.bid - 0.10, 2)))
    between = math.ceil(cq.mid * 100) / 100
    assert cq.mid <= between < cq.ask
    broker.place(ACCOUNT, 1, _spread_ticket(chain, 2, between, qty=5))
    fills: list[ExecReport] = []
    for _ in range(600):
        clock.advance(1)
        fills += [e for e in broker.step() if isinstance(e, ExecReport)]
    assert all(f.order.order_id == 2 for f in fills)
    assert broker.orders[(ACCOUNT, 1, 1)].status == "Submitted"
    assert broker.orders[(ACCOUNT, 1, 2)].filled > 0


def test_partial_fills_happen_for_some_seed() -> None:
    partial = False
    for seed in range(12):
        broker, clock, chain = _broker(seed)
        legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
        assert legs is not None
        cq = combo_quote(broker.market, legs)
        broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, round(cq.ask - 0.01, 2), qty=10))
        sizes = []
        for _ in range(120):
            clock.advance(1)
            sizes += [e.execution.shares for e in broker.step() if isinstance(e, ExecReport)]
        if any(s < 10 for s in sizes):
            partial = True
            break
    assert partial


def test_what_if_modify_cancel_duplicate_and_margin_reject() -> None:
    broker, _, chain = _broker(equity=1_000)
    ticket = _spread_ticket(chain, 1, -1.00, qty=1)
    ticket.what_if = True
    [what_if] = broker.place(ACCOUNT, 1, ticket)
    assert isinstance(what_if, WhatIfResult)
    assert what_if.state.init_change == pytest.approx(400.0)
    assert broker.orders == {}
    resting = _spread_ticket(chain, 2, -3.00, qty=1)
    events = broker.place(ACCOUNT, 1, resting)
    perm = broker.orders[(ACCOUNT, 1, 2)].perm_id
    modified = _spread_ticket(chain, 2, -2.90, qty=1)
    events = broker.place(ACCOUNT, 1, modified)
    assert isinstance(events[0], OrderUpdate)
    assert events[0].order.perm_id == perm
    assert events[0].order.ticket.lmt_price == -2.90
    events = broker.cancel(ACCOUNT, 1, 2)
    assert isinstance(events[0], OrderUpdate) and events[0].status == "Cancelled"
    assert isinstance(events[1], OrderError) and events[1].code == 202
    [dup] = broker.place(ACCOUNT, 1, _spread_ticket(chain, 2, -3.00))
    assert isinstance(dup, OrderError) and dup.code == 103
    [unknown] = broker.cancel(ACCOUNT, 1, 99)
    assert isinstance(unknown, OrderError) and unknown.code == 10147
    [rejected] = broker.place(ACCOUNT, 1, _spread_ticket(chain, 3, -1.00, qty=5))
    assert isinstance(rejected, OrderError) and rejected.code == 201


def test_rejected_modification_leaves_the_order_working_unchanged() -> None:
    broker, _, chain = _broker()
    broker.place(ACCOUNT, 1, _spread_ticket(chain, 5, -3.00, qty=1))
    order = broker.orders[(ACCOUNT, 1, 5)]
    broker.reject_next_modifications = 1
    [refused] = broker.place(ACCOUNT, 1, _spread_ticket(chain, 5, -2.90, qty=1))
    assert isinstance(refused, OrderError) and refused.code == 201
    assert "modify" in refused.text
    assert order.is_live and order.status == "Submitted"
    assert order.ticket.lmt_price == -3.00  # still at the previous price
    assert broker.reject_next_modifications == 0
    # New orders are not affected by this fault, and the next modification goes through.
    events = broker.place(ACCOUNT, 1, _spread_ticket(chain, 6, -3.00, qty=1))
    assert isinstance(events[0], OrderUpdate)
    events = broker.place(ACCOUNT, 1, _spread_ticket(chain, 5, -2.95, qty=1))
    assert isinstance(events[0], OrderUpdate) and order.ticket.lmt_price == -2.95


def _two_account_fills(first: str, step_every: int) -> dict[str, list[tuple[int, float]]]:
    """Resting orders of two accounts placed in the order ``first`` says, stepped
    every ``step_every`` simulated seconds: (second, shares) of each account's fills."""
    clock = ManualClock(START)
    chain = Chain(480, DAY)
    market = Market(clock, chain, seed=3, scenario=Scenario(spot=480, walk_vol=0))
    accounts = {a: Account(a, 100_000) for a in ("DUA", "DUB")}
    broker = Broker(market, chain, accounts, seed=3)
    legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
    assert legs is not None
    between = math.ceil(combo_quote(market, legs).mid * 100) / 100
    order = ["DUA", "DUB"] if first == "DUA" else ["DUB", "DUA"]
    for account in order:
        broker.place(account, 1, _spread_ticket(chain, 1, between, qty=6))
    fills: dict[str, list[tuple[int, float]]] = {"DUA": [], "DUB": []}
    for _ in range(0, 900, step_every):
        clock.advance(step_every)
        for e in broker.step():
            if isinstance(e, ExecReport) and e.execution.side == "BOT":
                x = e.execution
                fills[x.account].append((int(x.time.timestamp()), x.shares))
    return fills


def test_fills_do_not_depend_on_which_account_ordered_first_or_on_loop_speed() -> None:
    """The fill draws are keyed by order identity and simulated second, not by the
    global permId or call order: accounts racing each other (the demo's followers)
    or a slower server loop must not change anyone's fills."""
    base = _two_account_fills("DUA", 1)
    assert base["DUA"] and base["DUB"], "resting orders should fill within 15 minutes"
    assert base["DUA"] != base["DUB"], "accounts draw independently"
    assert _two_account_fills("DUB", 1) == base
    assert _two_account_fills("DUA", 7) == base


def test_quotes_hold_for_their_step() -> None:
    """With one-minute bars every request within the minute sees the same prices,
    and the next minute is priced afresh (the path moves, time decays)."""
    clock = ManualClock(START)
    chain = Chain(480, DAY)
    bars = Market(clock, chain, seed=5, scenario=Scenario(spot=480), quote_step=60)
    live = Market(clock, chain, seed=5, scenario=Scenario(spot=480))
    put = chain.option(DAY, 478, "P")
    first = bars.quote(put)
    seconds = [bars.quote(put, START + timedelta(seconds=s)) for s in (0, 13, 29.5, 59.9)]
    assert all(q == first for q in seconds)
    assert bars.spot(START + timedelta(seconds=59)) == bars.spot(START)
    assert first == live.quote(put, START)  # a bar is the market at its first second
    later = bars.quote(put, START + timedelta(seconds=60))
    assert later == live.quote(put, START + timedelta(seconds=60))
    assert later.greeks != first.greeks
    with pytest.raises(ValueError, match="quote_step"):
        Market(clock, chain, quote_step=0)


def _ladder_fills(
    seed: int, delays: list[float], tick: float = 0.01
) -> list[tuple[float, float, float]]:
    """A 10-rung ladder on one resting combo, from just above mid, ``tick`` less
    credit per rung, each move ``5 s + delays[k]`` after the previous one, the
    server loop stepping every 0.3 s: (rung, shares, price) of each fill."""
    clock = ManualClock(START)
    chain = Chain(480, DAY)
    market = Market(clock, chain, seed=seed, scenario=Scenario(spot=480), quote_step=60)
    broker = Broker(market, chain, {ACCOUNT: Account(ACCOUNT, 100_000)}, seed=seed)
    legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
    assert legs is not None
    mid = math.ceil(combo_quote(market, legs).mid * 100) / 100
    fills: list[tuple[float, float, float]] = []

    def collect(events: list[Any], rung: int) -> None:
        for e in events:
            if isinstance(e, ExecReport) and e.execution.side == "BOT":
                fills.append((rung, e.execution.shares, e.execution.price))

    collect(broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, mid, qty=8)), 0)
    for rung, delay in enumerate(delays, start=1):
        waited = 0.0
        while waited + 0.3 < 5.0 + delay:
            clock.advance(0.3)
            waited += 0.3
            collect(broker.step(), rung - 1)
        clock.advance(5.0 + delay - waited)
        limit = round(mid + tick * rung, 2)
        collect(broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, limit, qty=8)), rung)
        if not broker.orders[(ACCOUNT, 1, 1)].is_live:
            break
    return fills


def test_ladder_fills_do_not_depend_on_sub_second_timing_of_the_moves() -> None:
    """Each move up to ~0.4 s early or late (a busy machine on a compressed clock)
    gives the same fills at the same rungs: the fill grid follows the last limit
    change, and an evaluation that was due before a move happens before it."""
    jitters = ([0.4, -0.3, 0.2, 0.35, -0.4, 0.1, 0.0, 0.3, -0.2], [-0.45] * 9, [0.45] * 9)
    differing = 0
    for seed in range(8):
        for tick in (0.01, 0.0):  # a real ladder; a limit held (only the hazard decides)
            on_time = _ladder_fills(seed, [0.0] * 9, tick)
            for delays in jitters:
                assert _ladder_fills(seed, delays, tick) == on_time, (seed, tick, delays)
        assert _ladder_fills(seed, [0.0] * 9), f"seed {seed}: a ladder to natural fills"
        # Moves a whole second late are another ladder: the comparison can fail.
        if _ladder_fills(seed, [1.5] * 9, 0.0) != _ladder_fills(seed, [0.0] * 9, 0.0):
            differing += 1
    assert differing > 0


def test_a_fill_due_before_a_cancel_happens_first() -> None:
    broker, clock, chain = _broker(seed=1)
    legs = broker.resolve_legs(_spread_ticket(chain, 1, None))
    assert legs is not None
    cq = combo_quote(broker.market, legs)
    # Just inside natural: the hazard is about 50 %/s, so it has filled within 60 s.
    broker.place(ACCOUNT, 1, _spread_ticket(chain, 1, round(cq.ask - 0.01, 2), qty=1))
    clock.advance(60)  # no loop step ran in between
    events = broker.cancel(ACCOUNT, 1, 1)
    assert any(isinstance(e, ExecReport) for e in events)
    assert isinstance(events[-1], OrderError) and events[-1].code == 10148
    assert broker.orders[(ACCOUNT, 1, 1)].status == "Filled"
