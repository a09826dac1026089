"""A compressed paper trading day through the whole stack, checked against the stores.

The demo runs for real (services, ibsim, sidecar, functions, runner on a
shared scaled clock, at the pace of ``make demo``). The assertions read the
outcome back from MongoDB, PostgreSQL and the local alert sink, and check that
the report shows exactly those figures.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from spreadpilot.devstack import ServiceEnv
from spreadpilot.domain import calendar

#: The default pace (``make demo``): the one whose repeatability the README
#: promises. At 300x a minute lasts 0.2 wall seconds, about what a TV check
#: with a liquidation takes on two busy cores, and checks start to overlap.
SPEED = 200.0
NamesFactory = Callable[[int], Any]


@pytest.fixture(scope="module")
def demo_run(
    names_factory: NamesFactory, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return _run_demo(names_factory, tmp_path_factory.mktemp("demo"))


def _run_demo(
    names_factory: NamesFactory, base: Path, startup_seconds: float = 0.0
) -> dict[str, Any]:
    """Seed 7 at the default pace, on databases and a log folder of its own."""
    from spreadpilot.demo.run import DemoOptions, run_demo

    names = names_factory(2)
    options = DemoOptions(
        seed=7,
        speed=SPEED,
        report_dir=base / "report",
        log_dir=base / "logs",
        database=names.database,
        redis_db=names.redis_db,
        pubsub_project=names.project,
        progress=False,
        startup_seconds=startup_seconds,
    )
    out = io.StringIO()
    result = run_demo(options, out=out)
    return {"result": result, "options": options, "output": out.getvalue()}


def test_demo_completes(demo_run: dict[str, Any]) -> None:
    result = demo_run["result"]
    assert result.ok, demo_run["output"] + "\n".join(result.problems)
    assert result.rollup_done
    assert "follower" in demo_run["output"] and "fill credit" in demo_run["output"]


def test_execution_states_in_mongodb(services: ServiceEnv, demo_run: dict[str, Any]) -> None:
    from spreadpilot.adapters.mongo import connect, database
    from spreadpilot.storage.executions import ExecutionsRepository

    data = demo_run["result"].data
    client = connect(services.mongo_uri, timeout_ms=5000)
    try:
        repo = ExecutionsRepository(database(client, demo_run["options"].database))
        states = {r.follower_id: r for r in repo.list_for_date(data.trading_date)}
    finally:
        client.close()
    assert {k: v.state.value for k, v in states.items()} == {
        "anna": "FILLED",
        "ben": "FILLED",
        "carla": "NO_MARGIN",
    }
    assert states["anna"].filled_qty == 2
    assert states["ben"].filled_qty == 10
    assert states["carla"].filled_qty == 0 and states["carla"].order_id is None


def _fills(services: ServiceEnv, name: str, day: date) -> list[Any]:
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.fills import FillsRepository

    return FillsRepository(Postgres(services.pg_dsn(name))).list_for_date(day)


def test_fills_in_postgresql_with_the_liquidation(
    services: ServiceEnv, demo_run: dict[str, Any]
) -> None:
    data = demo_run["result"].data
    rows = _fills(services, demo_run["options"].database, data.trading_date)
    by: dict[str, list[Any]] = {}
    for row in rows:
        by.setdefault(row.follower_id, []).append(row)
    assert set(by) == {"anna", "ben"}, "carla (NO_MARGIN) must have no fill"
    for follower, qty in (("anna", 2), ("ben", 10)):
        mine = by[follower]
        entry = [r for r in mine if not (r.order_ref or "").startswith("liq-")]
        closing = [r for r in mine if (r.order_ref or "").startswith("liq-")]
        # The spread opened as one combo (both legs) and was liquidated as one combo.
        assert {(r.side, r.strike) for r in entry} == {
            ("BOT", Decimal("474")),
            ("SLD", Decimal("479")),
        }
        assert {(r.side, r.strike) for r in closing} == {
            ("SLD", Decimal("474")),
            ("BOT", Decimal("479")),
        }
        for side_rows in (entry, closing):
            for strike in (Decimal("474"), Decimal("479")):
                assert sum(r.qty for r in side_rows if r.strike == strike) == qty
        assert all(r.commission is not None for r in mine)


def test_pnl_rows(services: ServiceEnv, demo_run: dict[str, Any]) -> None:
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.pnl import PnlRepository

    data = demo_run["result"].data
    repo = PnlRepository(Postgres(services.pg_dsn(demo_run["options"].database)))
    for follower in ("anna", "ben"):
        intraday = repo.intraday_for_day(follower, data.trading_date)
        # Marks every 30 s for the hours the spread was open, at the very least.
        assert len(intraday) > 100
        daily = repo.get_daily(follower, data.trading_date)
        assert daily is not None and daily.finalized
        # Closed by the liquidation: everything is realized, and it was a credit kept.
        assert daily.unrealized == 0
        assert daily.total == daily.realized
        assert daily.total > 0
    assert repo.get_daily("carla", data.trading_date) is None


def test_alerts_reached_the_local_sink(demo_run: dict[str, Any]) -> None:
    from spreadpilot.local.sinks import read_alerts

    alerts = read_alerts(demo_run["options"].log_dir / "alerts.jsonl")
    kinds = {(a["type"], a.get("follower_id")) for a in alerts}
    assert ("EXECUTION_FILLED", "anna") in kinds
    assert ("EXECUTION_FILLED", "ben") in kinds
    assert ("NO_MARGIN", "carla") in kinds
    assert ("TV_LIQUIDATED", "anna") in kinds
    assert ("TV_LIQUIDATED", "ben") in kinds
    no_margin = next(a for a in alerts if a["type"] == "NO_MARGIN")
    assert no_margin["severity"] == "WARNING"
    # carla is a small ($5,000) account asked for an ordinary 15 spreads.
    figures = no_margin["params"]
    assert figures["qty"] == 15
    assert figures["available_funds"] == figures["equity_with_loan"] == 5_000.0
    assert figures["init_margin_change"] > figures["available_funds"]
    assert "available funds $5,000.00" in no_margin["message"]
    assert len({a["id"] for a in alerts}) == len(alerts), "the sink de-duplicates by id"


def test_report_matches_the_databases(services: ServiceEnv, demo_run: dict[str, Any]) -> None:
    from spreadpilot.adapters.mongo import connect, database
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.storage.executions import ExecutionsRepository
    from spreadpilot.storage.pnl import PnlRepository

    options = demo_run["options"]
    data = demo_run["result"].data
    report: Path = options.report_dir
    figures = json.loads((report / "report.json").read_text())
    page = (report / "index.html").read_text()
    # Opens offline: no remote script, stylesheet, image or font.
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page)
    for name in ("pnl-anna.png", "ladder-ben.png", "tv-ben.png", "alerts.png"):
        assert (report / name).read_bytes().startswith(b"\x89PNG")

    client = connect(services.mongo_uri, timeout_ms=5000)
    try:
        records = ExecutionsRepository(database(client, options.database)).list_for_date(
            data.trading_date
        )
    finally:
        client.close()
    pnl = PnlRepository(Postgres(services.pg_dsn(options.database)))
    fills = _fills(services, options.database, data.trading_date)
    for record in records:
        shown = figures["followers"][record.follower_id]
        assert shown["state"] == record.state.value
        assert shown["rung"] == record.rung
        assert shown["fill_credit"] == record.data.get("fill_credit")
        assert shown["fills"] == sum(1 for f in fills if f.follower_id == record.follower_id)
        daily = pnl.get_daily(record.follower_id, data.trading_date)
        assert shown["daily_total"] == (str(daily.total) if daily else None)
        assert shown["intraday_rows"] == len(
            pnl.intraday_for_day(record.follower_id, data.trading_date)
        )
        if daily is not None:
            # The page shows the same figure, formatted.
            assert f"{float(daily.total):+,.2f}" in page
    assert figures["followers"]["ben"]["liquidated"] is True
    # The NO_MARGIN alert is on the page with its margin figures.
    assert "NO_MARGIN" in page and "available funds $5,000.00" in page


def test_summary_table_printed(demo_run: dict[str, Any]) -> None:
    output: str = demo_run["output"]
    table = output[output.index("follower  ") :]
    assert re.search(r"carla\s+NO_MARGIN", table)
    assert re.search(r"anna\s+FILLED", table)


def _missed_in_session(log_dir: Path | None) -> Counter[str]:
    """What the periodic jobs did not record while the market was open.

    Per job name: scheduled runs the local runner did not fire (``overlap``,
    ``late``). Per follower id: P&L marks the job skipped for that follower
    (its report names them, e.g. no mark for a contract mid-liquidation).
    """
    assert log_dir is not None, "the demo result names its log directory"
    missed: Counter[str] = Counter()
    lines = (log_dir / "runner-events.jsonl").read_text().splitlines()
    for event in (json.loads(line) for line in lines if line.strip()):
        if not calendar.is_market_open(datetime.fromisoformat(event["at"])):
            continue
        if event["kind"] == "overlap":
            missed[event["name"]] += 1
        elif event["kind"] == "late":
            for job in ("pnl-mtm", "tv-monitor"):
                missed[job] += int(event["detail"]["minutes"]) - 1
        elif event["kind"] == "job" and event["name"] == "pnl-mtm":
            missed.update(list((event.get("detail") or {}).get("skipped") or {}))
    return missed


def test_the_same_seed_gives_the_same_day_to_the_cent(
    demo_run: dict[str, Any],
    names_factory: NamesFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A second run of seed 7 (fresh databases, its own processes) reports the
    same day: states, fill credits, rungs, every fill price, the liquidation
    minute, the P&L to the cent and every alert count.

    The counts of the periodic jobs' output (P&L snapshots, TV points and
    with them the alert total) are equal unless the local runner did not fire
    some scheduled runs during the session: at 200x a minute is 0.3 s of wall
    time, and the runner skips a run whose previous one is still going
    (``overlap``) or collapses minutes it fell behind on (``late``), as its
    docstring says, and a mark taken while a liquidation fills is skipped for
    that follower (which follower depends on the wall clock). Each missed run
    may then cost what one run makes: two snapshots per follower (pnl-mtm),
    one TV point and one status alert per follower (tv-monitor); each skipped
    mark one snapshot. Seen on a busy two-core machine: 777 snapshots against
    780 (one overlap, one skipped mark), every price and P&L figure equal.

    A start slower than the demo allowed for joins the day after 09:26 and
    would meet the market elsewhere (seen: every fill a cent off); the demo
    then starts the day again, and this test makes the second run do so."""
    # One second is too short for any start here: the second run joins its
    # first day late and must start the day again, which must not show.
    second = _run_demo(names_factory, tmp_path_factory.mktemp("demo-again"), startup_seconds=1.0)
    assert second["result"].ok, second["output"] + "\n".join(second["result"].problems)
    assert "starting the day again" in second["output"], second["output"]
    again = json.loads((second["options"].report_dir / "report.json").read_text())
    figures = json.loads((demo_run["options"].report_dir / "report.json").read_text())
    assert figures["followers"]["ben"]["fill_prices"], "the comparison must cover fills"

    missed = _missed_in_session(demo_run["result"].log_dir) + _missed_in_session(
        second["result"].log_dir
    )
    followers = len(figures["followers"])

    def counts(report: dict[str, Any]) -> dict[str, int]:
        """Take the periodic jobs' counts out of ``report``, so the rest compares exactly."""
        taken = {"alerts_total": report.pop("alerts_total")}
        for name, follower in report["followers"].items():
            for key in ("intraday_rows", "tv_points"):
                taken[f"{name} {key}"] = follower.pop(key)
        return taken

    ours, theirs = counts(figures), counts(again)
    # Prices, states, P&L and the alerts meant for people first: a difference
    # there is the real finding, whatever the counts say.
    assert again == figures
    allowed = {"alerts_total": missed["tv-monitor"] * followers}
    for name in figures["followers"]:
        allowed[f"{name} intraday_rows"] = 2 * missed["pnl-mtm"] + missed[name]
        allowed[f"{name} tv_points"] = missed["tv-monitor"]
    too_far = {
        what: (ours[what], theirs[what], limit)
        for what, limit in allowed.items()
        if abs(ours[what] - theirs[what]) > limit
    }
    assert not too_far, (too_far, dict(missed))
