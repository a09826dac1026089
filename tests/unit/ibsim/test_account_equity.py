"""Per-account starting cash: ``--listen PORT=ACCOUNT:EQUITY`` and ``SimConfig.account_equity``.

A small account next to large ones is what makes a NO_MARGIN follower
realistic (the demo's carla), so each account's equity must be settable on
its own while ``--equity`` stays the default for the rest.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from spreadpilot.clock import NEW_YORK, ManualClock

from ibsim import IBSim, SimConfig
from ibsim.cli import build_parser, config_from_args


def _config(*argv: str) -> SimConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_listen_with_equity_sets_that_account_only() -> None:
    cfg = _config(
        "--port", "4002", "--account", "DU1", "--equity", "250000",
        "--listen", "4003=DU2:5000", "--listen", "4004=DU3",
    )  # fmt: skip
    assert cfg.listen == [(4002, "DU1"), (4003, "DU2"), (4004, "DU3")]
    assert cfg.account_equity == {"DU2": 5000.0}
    sim = IBSim(_manual(cfg))
    cash = {a: acct.cash for a, acct in sim.accounts.items()}
    assert cash == {"DU1": 250_000.0, "DU2": 5_000.0, "DU3": 250_000.0}


def test_primary_account_equity_through_listen() -> None:
    cfg = _config("--port", "4002", "--account", "DU1", "--listen", "4010=DU1:7500.5")
    assert cfg.listen == [(4010, "DU1")]
    assert IBSim(_manual(cfg)).accounts["DU1"].cash == 7500.5


def test_default_equity_is_unchanged() -> None:
    cfg = _config("--listen", "4003=DU2")
    assert cfg.account_equity == {}
    sim = IBSim(_manual(cfg))
    assert {acct.cash for acct in sim.accounts.values()} == {100_000.0}


@pytest.mark.parametrize("bad", ["4003=DU2:lots", "4003=DU2:-1", "4003=DU2:inf", "x=DU2", "4003"])
def test_bad_listen_values_are_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--listen", bad])


def test_python_api_rejects_equity_for_an_account_not_served() -> None:
    cfg = SimConfig(listen=[(0, "DU1")], account_equity={"DU9": 1.0})
    with pytest.raises(ValueError, match="DU9"):
        IBSim(_manual(cfg))


def _manual(cfg: SimConfig) -> SimConfig:
    cfg.clock = ManualClock(datetime(2025, 1, 15, 10, 0, tzinfo=NEW_YORK))
    cfg.auto_step = False
    return cfg
