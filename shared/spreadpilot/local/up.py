"""``spreadpilot local up``: the whole system on this machine until Ctrl-C.

What a person gets: the services, ibsim serving one paper account per
configured follower, the sidecar on its usual port, the functions, and the
runner firing the schedule and pushing Pub/Sub messages. Alerts appear on the
console and in ``.devstack/local/alerts.jsonl``; Telegram and SendGrid are
used for real only when their secrets are set in the environment.

The clock: the wall clock while NYSE is open. Otherwise 0DTE options have
expired and nothing could trade, so by default the stack runs on a simulated
clock (speed 1) starting at 09:30 New York on the most recent trading day,
and says so. ``--start``/``--speed`` choose any time and pace.

``.devstack/local/env.sh`` holds what another shell needs to talk to the
running stack (store URLs, Pub/Sub project, sidecar URL and token, the clock).
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from types import FrameType
from typing import TextIO

from spreadpilot.clock import NEW_YORK, ScaledClock
from spreadpilot.domain import calendar
from spreadpilot.local.stack import LocalStack, StackConfig, env_file_lines, free_port
from spreadpilot.local.supervisor import ComponentFailed

EMPTY_SHEET = "Date,Ticker,Strategy,Qty per leg,Strike Long,Strike Short\n"


@dataclass
class UpOptions:
    start: datetime | None = None
    speed: float | None = None
    seed: int = 0
    scenario: Path | None = None
    followers: Path | None = None
    sheet: Path | None = None
    sidecar_port: int | None = None
    mongo_db: str | None = None
    pg_database: str | None = None
    redis_db: int | None = None
    project: str | None = None
    fresh: bool = False
    function_per_process: bool = False
    log_dir: Path | None = None


def choose_clock(options: UpOptions, now: datetime | None = None) -> tuple[dict[str, str], str]:
    """The SIM_* variables (empty = wall clock) and a sentence saying which clock runs."""
    speed = options.speed or 1.0
    if options.start is not None:
        clock = ScaledClock(options.start, speed)
        return clock.to_env(), (
            f"simulated clock from {options.start.astimezone(NEW_YORK):%Y-%m-%d %H:%M} "
            f"New York at {speed:g}x"
        )
    moment = now or datetime.now(NEW_YORK)
    if speed == 1.0 and calendar.is_market_open(moment):
        return {}, "wall clock (NYSE is open)"
    day = moment.astimezone(NEW_YORK).date()
    if not calendar.is_trading_day(day) or moment >= calendar.market_close(day):
        day = day if calendar.is_trading_day(day) else calendar.previous_trading_day(day)
    else:  # before today's open: yesterday's session
        day = calendar.previous_trading_day(day)
    start = datetime.combine(day, dtime(9, 30), tzinfo=NEW_YORK)
    clock = ScaledClock(start, speed)
    return clock.to_env(), (
        f"simulated clock from {start:%Y-%m-%d %H:%M} New York at {speed:g}x "
        "(NYSE is closed now; pass --start/--speed to choose)"
    )


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_local_up(options: UpOptions, out: TextIO = sys.stdout) -> int:
    """Bring everything up, stream alerts, stop everything on SIGINT/SIGTERM."""
    from spreadpilot.config import get_settings
    from spreadpilot.demo import scenario as sc
    from spreadpilot.devstack import DevstackError, ensure_services, layout

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    settings = get_settings()
    lay = layout()
    log_dir = options.log_dir or lay.root / "local"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack: LocalStack | None = None
    status = 0
    try:
        services = ensure_services(report=lambda m: say(f"services: {m}"))
        clock_env, clock_text = choose_clock(options)
        sheet = options.sheet or log_dir / "sheet.csv"
        if options.sheet is None and not sheet.exists():
            sheet.write_text(EMPTY_SHEET, encoding="utf-8")
        scenario_file = options.scenario
        if scenario_file is None:
            scenario_file = log_dir / "scenario.json"
            sc.write_scenario(scenario_file, sc.market_path(options.seed))
        people = (
            sc.load_followers(options.followers)
            if options.followers
            else list(sc.DEFAULT_FOLLOWERS)
        )
        config = StackConfig(
            repo_root=lay.repo_root,
            log_dir=log_dir,
            services=services,
            # Added only when the database has no follower yet.
            followers=[p.follower(p.port or 4002 + i) for i, p in enumerate(people)],
            mongo_db=options.mongo_db or settings.mongo_db,
            pg_database=options.pg_database or "spreadpilot",
            redis_db=options.redis_db if options.redis_db is not None else 0,
            pubsub_project=options.project or settings.pubsub_project_id,
            sidecar_port=options.sidecar_port or settings.sidecar_port,
            sidecar_token=(
                settings.sidecar_token.get_secret_value()
                if settings.sidecar_token
                else secrets.token_urlsafe(24)
            ),
            ibsim_seed=options.seed,
            ibsim_scenario=scenario_file,
            ibsim_equity=sc.account_equity(people),
            ibsim_control_port=free_port(),
            clock_env=clock_env,
            sheet_csv_path=sheet,
            fresh=options.fresh,
            function_per_process=options.function_per_process,
            console_alerts=True,
        )
        stack = LocalStack(config, report=lambda m: say(m))
        stack.prepare_databases()
        stack.prepare_runner()
        stack.start_processes()
        stack.start_runner()
        env_file = log_dir / "env.sh"
        env_file.write_text("\n".join(env_file_lines(config.environ())) + "\n", encoding="utf-8")
        env_file.chmod(0o600)
        _banner(say, config, clock_text, env_file, stack)
        while True:
            failed = stack.failures()
            if failed:
                raise failed[0]
            time.sleep(0.2)
    except _Stop as stop:
        say(f"\n{stop.args[0]}: stopping everything...")
    except ComponentFailed as exc:
        say(f"error: {exc.details()}")
        status = 1
    except DevstackError as exc:
        say(f"error: local services: {exc}")
        status = 1
    finally:
        # A second Ctrl-C must not interrupt the clean-up half way.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        if stack is not None:
            with contextlib.suppress(Exception):
                statuses = stack.stop()
                say("stopped: " + ", ".join(f"{k}" for k in statuses) if statuses else "stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _banner(
    say: object, config: StackConfig, clock_text: str, env_file: Path, stack: LocalStack
) -> None:
    assert callable(say)
    accounts = ", ".join(f"{f.id}={f.account}@{f.gateway.port}" for f in config.followers)
    url = config.sidecar_url
    say("")
    say("SpreadPilot is running on this machine. Ctrl-C stops everything it started.")
    say(f"  clock     {clock_text}")
    say(f"  ibsim     {accounts}")
    say(f"  sidecar   {url}  (bearer token in {env_file})")
    say(f"  functions {', '.join(stack.targets())}")
    say(f"  runner    {config.log_dir / 'runner-events.jsonl'}")
    say(f"  sheet     {config.sheet_csv_path} (add today's row to trade it at 09:27)")
    say(f"  alerts    console and {config.alerts_path}")
    say(f"  logs      {config.log_dir}/*.log")
    say("Try, in another shell:")
    say(f"  source {env_file}")
    say(f'  curl -s -H "Authorization: Bearer $SIDECAR_TOKEN" {url}/status')
    say(
        "  spreadpilot signal publish --strategy bull_put --qty-per-leg 2 "
        "--strike-long 474 --strike-short 479"
    )
    say(f'  curl -s -X POST -H "Authorization: Bearer $SIDECAR_TOKEN" {url}/close/all')
    say("")
