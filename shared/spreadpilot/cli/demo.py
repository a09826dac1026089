"""``spreadpilot demo``: a compressed paper trading day with a report (``make demo``)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from spreadpilot.cli._root import main


@main.command("demo")
@click.option("--seed", type=int, default=7, show_default=True, help="Market and fill seed.")
@click.option(
    "--speed",
    type=click.FloatRange(min=1.0),
    default=200.0,
    show_default=True,
    help="Simulated seconds per wall second (200: the day in about two minutes).",
)
@click.option(
    "--entry-speed",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="The pace from 09:26:58 to 09:28:10, around the signal and its ladder, so "
    "that a seed repeats to the cent (capped at --speed).",
)
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="ibsim scenario file (JSON/YAML) instead of the embedded one.",
)
@click.option(
    "--followers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Followers (JSON/YAML list of {id, name, account, qty_multiplier, max_qty_per_leg}).",
)
@click.option(
    "--date",
    "trading_date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Trading day to simulate (default: the most recent full NYSE session).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-report"),
    show_default=True,
)
@click.option(
    "--startup-seconds",
    type=click.FloatRange(min=0.0),
    default=0.0,
    help="Wall seconds allowed for the processes to start before 09:26 simulated "
    "(default: learnt from the previous run, 20 the first time); a start that joins "
    "the day late starts the day again.",
)
@click.option("--no-progress", is_flag=True, help="No live status line.")
def demo(
    seed: int,
    speed: float,
    entry_speed: float,
    scenario: Path | None,
    followers: Path | None,
    trading_date: object,
    report_dir: Path,
    startup_seconds: float,
    no_progress: bool,
) -> None:
    """Trade one paper day (signal, ladder, TV checks, MTM, rollup) and write a report.

    Everything runs for real on this machine: the local services, ibsim, the
    sidecar and the functions on a shared scaled clock. The same seed gives
    the same day. Exits 1 if any component failed.
    """
    from spreadpilot.demo.run import DemoOptions, run_demo

    day: date | None = trading_date.date() if hasattr(trading_date, "date") else None
    options = DemoOptions(
        seed=seed,
        speed=speed,
        entry_speed=entry_speed,
        scenario=scenario,
        followers=followers,
        trading_date=day,
        report_dir=report_dir,
        startup_seconds=startup_seconds,
        progress=not no_progress,
    )
    result = run_demo(options)
    click.echo(f"wall time {result.wall_seconds:.0f}s")
    if not result.ok:
        click.echo("\nthe demo did not complete cleanly:", err=True)
        for problem in result.problems:
            click.echo(f"- {problem}", err=True)
        click.echo(f"logs: {result.log_dir}", err=True)
        sys.exit(1)
