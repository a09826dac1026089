"""0DTE expiry at the close, as a client sees it.

A bull put spread whose short leg is in the money at 16:00 becomes a QQQ stock
position (assignment: +100 shares per short put at the strike) while the OTM
long put vanishes; a working order on an expiring option is cancelled. Early
closes expire at 13:00.
"""

from __future__ import annotations

from datetime import date, datetime
from types import ModuleType

import pytest
from ibsim_testkit import (
    ACCOUNT,
    LIBRARIES,
    capture_library_logs,
    connect,
    credit_spread,
    make_config,
    option,
    run,
    running_sim,
    wait_until,
)
from spreadpilot.clock import NEW_YORK, ManualClock

from ibsim import IBSim, Scenario
from ibsim.market import expiry_close

NEAR_CLOSE = datetime(2025, 1, 15, 15, 50, tzinfo=NEW_YORK)


async def _expiry(lib: ModuleType) -> None:
    clock = ManualClock(NEAR_CLOSE)
    flat = Scenario(spot=480.0, walk_vol=0.0)
    async with running_sim(clock=clock, auto_step=False, scenario=flat) as sim:
        ib = await connect(lib, sim.port)
        errors: list[tuple[int, int]] = []
        ib.errorEvent += lambda req_id, code, *_: errors.append((req_id, code))
        short_put, long_put = option(lib, 485, "P"), option(lib, 470, "P")  # short ITM, long OTM
        await ib.qualifyContractsAsync(short_put, long_put)
        bag = credit_spread(lib, long_put, short_put)
        trade = ib.placeOrder(bag, lib.MarketOrder("BUY", 2))
        assert await wait_until(trade.isDone)
        assert trade.orderStatus.status == "Filled"
        resting = ib.placeOrder(short_put, lib.LimitOrder("BUY", 1, 1.00))  # far below: rests
        assert await wait_until(lambda: resting.orderStatus.status == "Submitted")
        assert await wait_until(lambda: len(ib.positions()) == 2)
        cash_before = sim.accounts[ACCOUNT].cash

        clock.advance(11 * 60)  # 16:01
        sim.step()

        assert await wait_until(lambda: resting.orderStatus.status == "Cancelled")
        assert (resting.order.orderId, 202) in errors

        def stock_only() -> bool:
            held = ib.positions()
            return len(held) == 1 and held[0].contract.secType == "STK"

        assert await wait_until(stock_only)
        stock = ib.positions()[0]
        assert stock.contract.symbol == "QQQ"
        assert stock.position == 200  # 2 short puts assigned: +100 shares each
        assert stock.avgCost == pytest.approx(485.0)
        assert await wait_until(lambda: [p.contract.secType for p in ib.portfolio()] == ["STK"])
        assert sim.accounts[ACCOUNT].cash == pytest.approx(cash_before - 485.0 * 200)
        ib.disconnect()


@pytest.mark.parametrize("lib_name", sorted(LIBRARIES))
def test_itm_short_put_is_assigned_and_otm_leg_vanishes(lib_name: str) -> None:
    with capture_library_logs() as logs:
        run(_expiry(LIBRARIES[lib_name]))
    assert logs.problems() == []


def test_early_close_expires_at_one_pm() -> None:
    friday_after_thanksgiving = date(2025, 11, 28)
    close = expiry_close(friday_after_thanksgiving).astimezone(NEW_YORK)
    assert (close.hour, close.minute) == (13, 0)
    regular = expiry_close(date(2025, 11, 26)).astimezone(NEW_YORK)
    assert (regular.hour, regular.minute) == (16, 0)

    clock = ManualClock(datetime(2025, 11, 28, 12, 55, tzinfo=NEW_YORK))
    sim = IBSim(make_config(clock=clock, auto_step=False, scenario=Scenario(480, walk_vol=0)))
    account = sim.accounts[ACCOUNT]
    itm_put = sim.chain.option(friday_after_thanksgiving, 490, "P")
    otm_call = sim.chain.option(friday_after_thanksgiving, 500, "C")
    account.apply_fill(itm_put, -1, 10.0, 0.65)
    account.apply_fill(otm_call, -1, 0.05, 0.65)
    clock.advance(4 * 60)  # 12:59: nothing yet
    sim.step()
    assert len(account.open_positions()) == 2
    clock.advance(2 * 60)  # 13:01
    sim.step()
    held = {p.instrument.sec_type: p.quantity for p in account.open_positions()}
    assert held == {"STK": 100}
