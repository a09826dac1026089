"""``spreadpilot demo``: one compressed paper trading day, start to report.

The orchestration, in order:

1. the local services (installed and started if needed);
2. fresh demo databases (``spreadpilot_demo`` in PostgreSQL and MongoDB, a
   Redis database of its own, a Pub/Sub project of its own), so a demo never
   sees a previous run's signal ledger or fills and never touches the
   developer's own data;
3. the sheet file with today's signal and the ibsim scenario (from the seed);
4. the stack on a scaled clock that starts at 09:26 New York *when the stack
   is expected to be up* (the anchor lies a few seconds in the future, so the
   seconds spent importing and connecting are spent before the opening bell,
   not during the trading day);
5. a live status line until the 16:30 daily rollup has run;
6. the report from the databases, and the summary table.

The demo never messages real people: Telegram and SendGrid secrets in the
caller's environment are removed from the children's environment.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, TextIO

from spreadpilot.clock import NEW_YORK, ScaledClock
from spreadpilot.demo import scenario as sc
from spreadpilot.local.runner import RunnerEvent
from spreadpilot.local.stack import (
    REAL_ALERT_VARIABLES,
    LocalStack,
    StackConfig,
    free_port,
)
from spreadpilot.local.supervisor import ComponentFailed

DEMO_DB = "spreadpilot_demo"
DEMO_REDIS_DB = 1
DEMO_PROJECT = "spreadpilot-demo"
DEFAULT_SPEED = 200.0
#: The pace around the entry (see ``pace_changes``) and the window it covers:
#: the 09:27 signal, its dispatch and a full ten-rung ladder with its cancel.
ENTRY_SPEED = 10.0
ENTRY_WINDOW = (dtime(9, 26, 58), dtime(9, 28, 10))
#: Quotes hold for a simulated minute (one-minute bars), see ``ibsim.market``.
QUOTE_STEP_SECONDS = 60
# Wall seconds between launching the processes and 09:26 simulated, the first
# time (a cold start on a busy two-core machine took 17-20 s).
DEFAULT_STARTUP_SECONDS = 20.0
#: Starts of the day: a second one when the first joined late (see run_demo).
LAUNCH_ATTEMPTS = 2


@dataclass
class DemoOptions:
    seed: int = 7
    speed: float = DEFAULT_SPEED
    #: simulated seconds per wall second around the entry (never above ``speed``)
    entry_speed: float = ENTRY_SPEED
    scenario: Path | None = None
    followers: Path | None = None
    trading_date: date | None = None
    report_dir: Path = Path("demo-report")
    #: 0 = learn from the previous run (see _startup_allowance)
    startup_seconds: float = 0.0
    database: str = DEMO_DB
    redis_db: int = DEMO_REDIS_DB
    pubsub_project: str = DEMO_PROJECT
    log_dir: Path | None = None
    start_time: dtime = dtime(9, 26)
    stop_after: dtime = dtime(16, 30)
    progress: bool = True


@dataclass
class DemoResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    log_dir: Path | None = None
    wall_seconds: float = 0.0
    data: Any = None
    rollup_done: bool = False


class Progress:
    """The live status line: simulated time and what has happened so far."""

    def __init__(self, clock: ScaledClock, out: TextIO, live: bool) -> None:
        self.clock = clock
        self.out = out
        self.live = live and out.isatty()
        self.lock = threading.Lock()
        self._last_plain = 0.0
        self.lines: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Forget the counts (the day starts again)."""
        with self.lock:
            self.jobs: Counter[str] = Counter()
            self.failed_jobs: Counter[str] = Counter()
            self.alerts: Counter[str] = Counter()
            self.pushes = 0
            self.liquidated = 0
            self.rollup_ok = False
            self.rollup_ran = False

    def on_event(self, event: RunnerEvent) -> None:
        with self.lock:
            if event.kind == "job":
                (self.jobs if event.ok else self.failed_jobs)[event.name] += 1
                if event.ok and event.name == "pnl-rollup-daily":
                    self.rollup_ran = True
                    if event.detail.get("rolled"):
                        self.rollup_ok = True
            elif event.kind == "push":
                self.pushes += 1
            elif event.kind == "alert":
                self.alerts[event.name] += 1
                if event.name == "TV_LIQUIDATED":
                    self.liquidated += 1

    def line(self, states: dict[str, str]) -> str:
        now = self.clock.now().astimezone(NEW_YORK)
        with self.lock:
            execs = " ".join(f"{k}={v}" for k, v in sorted(states.items())) or "-"
            alerts = sum(self.alerts.values())
            return (
                f"{now:%H:%M:%S} NY | executions {execs} | TV checks {self.jobs['tv-monitor']}"
                f" | MTM runs {self.jobs['pnl-mtm']} | liquidations {self.liquidated}"
                f" | alerts {alerts} | failed calls {sum(self.failed_jobs.values())}"
            )

    def show(self, states: dict[str, str], *, final: bool = False) -> None:
        text = self.line(states)
        if self.live:
            self.out.write("\r\033[K" + text + ("\n" if final else ""))
            self.out.flush()
        elif final or time.monotonic() - self._last_plain >= 10:
            self._last_plain = time.monotonic()
            self.out.write(text + "\n")
            self.out.flush()


def _states(stack: LocalStack, day: date) -> dict[str, str]:
    """follower -> execution state, read from MongoDB (what the report will show)."""
    from spreadpilot.adapters.mongo import connect, database

    cfg = stack.config
    client = connect(cfg.mongo_uri, timeout_ms=1000)
    try:
        docs = database(client, cfg.mongo_db)["executions"].find(
            {"trading_date": day.isoformat()}, {"follower_id": 1, "state": 1}
        )
        return {str(d["follower_id"]): str(d["state"]) for d in docs}
    except Exception:
        return {}
    finally:
        client.close()


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> DemoResult:
    """Run the day and write the report; never raises for a component failure."""
    from spreadpilot.devstack import DevstackError, ensure_services, layout

    started = time.monotonic()
    lay = layout()
    log_dir = options.log_dir or lay.root / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(ok=False, log_dir=log_dir)
    day = options.trading_date or sc.default_trading_day()
    _say(
        out,
        f"SpreadPilot demo: paper trading day {day.isoformat()}, seed {options.seed}, "
        f"{options.speed:g}x speed, {min(options.entry_speed, options.speed):g}x from "
        f"{ENTRY_WINDOW[0]:%H:%M:%S} to {ENTRY_WINDOW[1]:%H:%M:%S} (logs in {log_dir})",
    )

    try:
        services = ensure_services(report=lambda m: _say(out, f"  services: {m}"))
    except DevstackError as exc:
        result.problems.append(f"local services did not start: {exc}")
        return result

    # The market, the sheet and the followers.
    try:
        if options.scenario is not None:
            scenario_file = options.scenario
            path = sc.scenario_path_from_file(options.scenario)
        else:
            path = sc.market_path(options.seed)
            scenario_file = log_dir / "scenario.json"
            sc.write_scenario(scenario_file, path)
        signal = sc.signal_for(day, path)
        sheet = log_dir / "sheet.csv"
        sc.write_sheet(sheet, signal)
        people = (
            sc.load_followers(options.followers)
            if options.followers
            else list(sc.DEFAULT_FOLLOWERS)
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        result.problems.append(f"demo inputs are not usable: {type(exc).__name__}: {exc}")
        return result
    followers = [p.follower(free_port(), client_id=1) for p in people]

    config = StackConfig(
        repo_root=lay.repo_root,
        log_dir=log_dir,
        services=services,
        followers=followers,
        mongo_db=options.database,
        pg_database=options.database,
        redis_db=options.redis_db,
        pubsub_project=options.pubsub_project,
        sidecar_port=free_port(),
        ibsim_control_port=free_port(),
        ibsim_seed=options.seed,
        ibsim_scenario=scenario_file,
        ibsim_equity=sc.account_equity(people),
        ibsim_args=[
            "--equity",
            f"{sc.ACCOUNT_EQUITY:.0f}",
            # Pacing is a wall-clock limit; compressed time multiplies the
            # message rate by the speed, which real IB never sees.
            "--no-pacing",
            "--tick-interval",
            "0.02",
            "--quote-step",
            str(QUOTE_STEP_SECONDS),
            "--log-level",
            "WARNING",
        ],
        sheet_csv_path=sheet,
        strip_env=REAL_ALERT_VARIABLES,
        extra_env={
            # Poll the sheet every simulated second, as in production.
            "SIGNAL_WINDOW_MINUTES": "5",
            "SIDECAR_FOLLOWER_REFRESH_SECONDS": "2",
            "SIDECAR_HEALTH_INTERVAL_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
        },
        fresh=True,
        console_alerts=False,
    )
    stack = LocalStack(config, report=lambda m: _say(out, f"  {m}"))
    try:
        stack.prepare_databases()
        stack.prepare_runner(fresh_subscriptions=True)
    except Exception as exc:
        result.problems.append(f"demo data could not be prepared: {type(exc).__name__}: {exc}")
        return result

    start = datetime.combine(day, options.start_time, tzinfo=NEW_YORK)
    allowance = options.startup_seconds or _startup_allowance(log_dir)
    clock = demo_clock(day, options, time.time() + allowance)
    progress = Progress(clock, out, options.progress)
    failure: ComponentFailed | None = None
    day_started = False
    try:
        for attempt in range(1, LAUNCH_ATTEMPTS + 1):
            launched = time.monotonic()
            clock = demo_clock(day, options, time.time() + allowance)
            config.clock_env = clock.to_env()
            progress.clock = clock
            try:
                stack.start_processes()
            except ComponentFailed as exc:
                failure = exc
                raise
            runner = stack.start_runner()
            runner.add_listener(progress.on_event)
            day_started = True
            signal_time = datetime.combine(day, dtime(9, 26, 55), tzinfo=NEW_YORK)
            sessions = stack.wait_sessions(
                timeout=max(5.0, clock.wall_seconds((signal_time - clock.now()).total_seconds()))
            )
            took = time.monotonic() - launched
            _remember_startup(log_dir, took)
            late = (clock.now() - start).total_seconds()
            if late <= 0:
                break
            _say(
                out,
                f"  note: the stack took {clock.wall_seconds(late):.1f}s longer to start than "
                f"allowed ({allowance:.0f}s); it joined the day at "
                f"{clock.now().astimezone(NEW_YORK):%H:%M:%S}",
            )
            if attempt == LAUNCH_ATTEMPTS:
                break
            # A late join changes where the entry lands in the market, so the
            # seed would not repeat: start the day again, on fresh databases,
            # with what this start took.
            allowance = _allowance_after(took)
            _say(out, f"  starting the day again, allowing {allowance:.0f}s")
            stack.stop()
            progress.reset()
            stack.prepare_databases()
            stack.prepare_runner(fresh_subscriptions=True)
        not_ready = [f.id for f in config.followers if not sessions.get(f.id, {}).get("ready")]
        if not_ready:
            _say(out, f"  warning: gateway sessions not ready for {', '.join(not_ready)}")
        _say(out, f"  stack up after {time.monotonic() - started:.1f}s; trading day running")
        result.rollup_done = _watch(stack, progress, day, options, clock)
        runner.stop_schedule()
        runner.wait_idle(timeout=15)
    except ComponentFailed as exc:
        failure = failure or exc
    except KeyboardInterrupt:
        result.problems.append("interrupted")
    finally:
        if day_started:
            progress.show(_states(stack, day), final=True)
        if failure is not None:
            result.problems.append(failure.details())
        for problem in stack.failures():
            if failure is None or problem.name != failure.name:
                result.problems.append(problem.details())
        runner_failures = stack.runner.failures if stack.runner is not None else []
        stack.stop()
    for event in runner_failures:
        result.problems.append(
            f"{event.kind} {event.name} failed at {event.at.astimezone(NEW_YORK):%H:%M:%S} "
            f"(status {event.status}): {_short(event.detail)}"
        )
    if failure is None and not result.rollup_done and "interrupted" not in result.problems:
        result.problems.append(
            "the 16:30 daily rollup did not finalize any day"
            if progress.rollup_ran
            else "the 16:30 daily rollup did not run"
        )

    if failure is None:
        from spreadpilot.demo.data import collect
        from spreadpilot.demo.report import summary_table, write_report

        data = collect(config, day, signal)
        result.data = data
        result.report_dir = write_report(data, options.report_dir)
        _say(out, "")
        _say(out, summary_table(data))
        _say(out, f"\nreport: {result.report_dir / 'index.html'}")
    result.wall_seconds = time.monotonic() - started
    result.ok = not result.problems
    return result


def demo_clock(day: date, options: DemoOptions, anchor: float) -> ScaledClock:
    """The day's clock: ``speed``, slowed to ``entry_speed`` for the entry window.

    Why: the same seed must give the same day to the cent. At 200x a 5 s rung
    lasts 25 wall milliseconds, about what one database write takes on a busy
    two-core machine, so where a ladder stood when it filled would depend on
    the machine's load. At 10x a rung lasts half a wall second and the moves
    land well inside ibsim's half-second fill grid (``ibsim.orders``); the
    quiet hours still race at ``speed``. The window costs about seven wall
    seconds.
    """
    start = datetime.combine(day, options.start_time, tzinfo=NEW_YORK)
    begin, end = (datetime.combine(day, t, tzinfo=NEW_YORK) for t in ENTRY_WINDOW)
    slow, fast = options.entry_speed, options.speed
    if slow >= fast or end <= start:
        return ScaledClock(start, fast, anchor)
    if begin <= start:
        return ScaledClock(start, slow, anchor, [(end, fast)])
    return ScaledClock(start, fast, anchor, [(begin, slow), (end, fast)])


_STARTUP_FILE = "startup-seconds.txt"


def _startup_allowance(log_dir: Path) -> float:
    """Wall seconds to allow before 09:26: what the last start took, plus a margin.

    The clock must be fixed before the processes start (they all read it at
    start-up), so the demo bets on how long they will take. A bet too short
    loses the 09:27 signal; too long wastes wall time. The previous run on
    this machine is the best guide; the first run uses a safe default.
    """
    try:
        previous = float((log_dir / _STARTUP_FILE).read_text().strip())
    except (OSError, ValueError):
        return DEFAULT_STARTUP_SECONDS
    return _allowance_after(previous)


def _allowance_after(seconds: float) -> float:
    """The allowance for a start like one that took ``seconds``, with a margin."""
    return min(30.0, max(6.0, seconds * 1.3 + 2.0))


def _remember_startup(log_dir: Path, seconds: float) -> None:
    with contextlib.suppress(OSError):
        (log_dir / _STARTUP_FILE).write_text(f"{seconds:.2f}\n")


def _short(detail: Any) -> str:
    text = str(detail)
    return text if len(text) < 300 else text[:297] + "..."


def _watch(
    stack: LocalStack, progress: Progress, day: date, options: DemoOptions, clock: ScaledClock
) -> bool:
    """Show progress until the daily rollup has run; raise if a component dies."""
    end = datetime.combine(day, options.stop_after, tzinfo=NEW_YORK)
    give_up = end + timedelta(minutes=10)
    states: dict[str, str] = {}
    last_states = 0.0
    while True:
        failed = stack.failures()
        if failed:
            raise failed[0]
        now = clock.now()
        if time.monotonic() - last_states > 0.5:
            states = _states(stack, day)
            last_states = time.monotonic()
        if options.progress:
            progress.show(states)
        if now >= end and progress.rollup_ran:
            return progress.rollup_ok
        if now >= give_up:
            return False
        time.sleep(0.2)
