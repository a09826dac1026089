"""Per-account equity over the wire: a small account and a large one in one simulator.

The same combo fits the $100,000 account and not the $5,000 one, which is how
the demo's NO_MARGIN follower is made realistic.
"""

from __future__ import annotations

from ibsim_testkit import EXPIRY, run, running_sim
from spreadpilot.adapters.ib_broker import IBBroker


def test_each_account_reports_its_own_equity_and_margin_fit() -> None:
    async def body() -> None:
        async with running_sim(
            listen=[(0, "DUBIG"), (0, "DUSMALL")], account_equity={"DUSMALL": 5_000.0}
        ) as sim:
            checks = {}
            for account, port in sim.ports.items():
                broker = IBBroker("127.0.0.1", port, 3, account, request_timeout=5)
                await broker.connect()
                try:
                    long_leg = await broker.qualify_option("QQQ", EXPIRY, 474, "P")
                    short_leg = await broker.qualify_option("QQQ", EXPIRY, 479, "P")
                    bag = broker.bag([(long_leg, "BUY"), (short_leg, "SELL")])
                    order = broker.limit_order(broker.next_order_id(), 15, -0.9, "sp-whatif")
                    checks[account] = await broker.what_if(bag, order)
                finally:
                    broker.disconnect()
            big, small = checks["DUBIG"], checks["DUSMALL"]
            assert big.equity_with_loan == 100_000.0
            assert small.equity_with_loan == 5_000.0
            # 15 spreads 5 wide at 0.90 credit: (5 - 0.9) * 100 * 15 = 6,150 of margin.
            assert small.init_margin_change == big.init_margin_change == 6_150.0
            assert big.sufficient
            assert not small.sufficient

    run(body(), timeout=60)
