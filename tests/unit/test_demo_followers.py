"""The demo's followers and how their account sizes reach ibsim.

carla is the NO_MARGIN follower: a small account trading an ordinary size,
which is what a person watching the demo will recognise, rather than a large
account asked for an absurd one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from spreadpilot.demo import scenario as sc
from spreadpilot.devstack.services import ServiceEnv
from spreadpilot.local.stack import LocalStack, StackConfig
from spreadpilot.storage.fills import FillRow

from ibsim.cli import build_parser, config_from_args


def _qty(person: sc.DemoFollower) -> int:
    return min(math.floor(sc.SIGNAL_QTY * person.qty_multiplier), person.max_qty_per_leg)


def _margin(qty: int, credit: float) -> float:
    """Reg-T margin of ``qty`` credit spreads, as ibsim computes it."""
    return (sc.SPREAD_WIDTH - credit) * 100 * qty


def test_carla_is_a_small_account_that_cannot_carry_a_normal_size() -> None:
    people = {p.id: p for p in sc.DEFAULT_FOLLOWERS}
    carla = people["carla"]
    assert carla.equity == 5_000.0
    assert _qty(carla) <= 20  # an ordinary size, not 60x the signal
    for credit in (0.7, 0.92, 1.5):  # MIN_PRICE up to well above the demo's credit
        assert _margin(_qty(carla), credit) > carla.equity
    for other in ("anna", "ben"):
        assert _margin(_qty(people[other]), 0.7) < people[other].equity


def test_followers_file_equity(tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    path.write_text('[{"id": "a", "equity": 2500}, {"id": "b"}]')
    assert [p.equity for p in sc.load_followers(path)] == [2500.0, sc.ACCOUNT_EQUITY]
    path.write_text('[{"id": "a", "equity": "lots"}]')
    with pytest.raises(ValueError, match="equity"):
        sc.load_followers(path)


def test_stack_hands_each_account_its_equity_to_ibsim(tmp_path: Path) -> None:
    people = list(sc.DEFAULT_FOLLOWERS)
    config = StackConfig(
        repo_root=tmp_path,
        log_dir=tmp_path,
        services=ServiceEnv(pg_port=1, redis_port=2, mongo_port=3, pubsub_port=4),
        followers=[p.follower(4002 + i) for i, p in enumerate(people)],
        ibsim_equity=sc.account_equity(people),
    )
    argv = LocalStack(config).ibsim_spec().argv
    sim = config_from_args(build_parser().parse_args(argv[1:]))
    assert sim.listen == [(4002, "DU1000001"), (4003, "DU1000002"), (4004, "DU1000003")]
    equity = {a: sim.account_equity.get(a, sim.equity) for _, a in sim.listen}
    assert equity == {"DU1000001": 100_000.0, "DU1000002": 100_000.0, "DU1000003": 5_000.0}


def _fill(order_ref: str, when: datetime) -> FillRow:
    return FillRow(
        exec_id=f"x-{order_ref}-{when:%H%M%S}", follower_id="ben", account="DU1",
        symbol="QQQ", sec_type="OPT", side="BOT", qty=Decimal(10), price=Decimal("0.1"),
        exec_time=when, trading_date=when.date(), order_ref=order_ref, perm_id=1, order_id=1,
        con_id=1, right="P", strike=Decimal(479), expiry=when.date(), multiplier=100,
        commission=None, commission_currency=None, realized_pnl_ib=None,
    )  # fmt: skip


def test_liquidation_marker_is_the_fill_not_the_alert() -> None:
    """tv_monitor stamps TV_LIQUIDATED with the time its check *started*; the chart's
    marker must sit where the realized P&L steps, i.e. at the liquidation's fill."""
    from spreadpilot.demo.data import FollowerDay
    from spreadpilot.demo.report import _liquidation_time

    check = datetime(2026, 11, 24, 18, 6, tzinfo=UTC)
    fill = datetime(2026, 11, 24, 18, 13, 18, tzinfo=UTC)
    alert = {
        "type": "TV_LIQUIDATED",
        "created_at": check.isoformat().replace("+00:00", "Z"),
        "params": {"order_ref": "liq-P-1"},
    }
    day = FollowerDay("ben", "Ben", "DU1", 2.0, None, alerts=[alert])
    assert _liquidation_time(day) == check  # no fills known: the alert is all there is
    day.fills = [_fill("sp-entry", check.replace(hour=14)), _fill("liq-P-1", fill)]
    assert _liquidation_time(day) == fill
    assert _liquidation_time(FollowerDay("x", "X", "DU2", 1.0, None)) is None
