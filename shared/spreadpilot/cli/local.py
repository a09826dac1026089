"""``spreadpilot local``: the whole system on this machine (``local up``, ``local env``)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from spreadpilot.cli._root import main


def _start(value: str | None) -> datetime | None:
    if value is None:
        return None
    from spreadpilot.clock import NEW_YORK

    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=NEW_YORK)
        except ValueError:
            continue
    raise click.BadParameter(f"{value!r} is not YYYY-MM-DD HH:MM (New York time)")


@main.group()
def local() -> None:
    """Run services, ibsim, sidecar, functions and the scheduler locally."""


@local.command("up")
@click.option("--start", default=None, help='Simulated start, New York "YYYY-MM-DD HH:MM".')
@click.option("--speed", type=click.FloatRange(min=0.01), default=None, help="Clock speed.")
@click.option("--seed", type=int, default=0, show_default=True, help="ibsim market seed.")
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ibsim scenario file (JSON/YAML).",
)
@click.option(
    "--followers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Followers to add when none is configured (JSON/YAML list; default: three examples).",
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signal sheet CSV the poller reads (default: .devstack/local/sheet.csv).",
)
@click.option("--sidecar-port", type=int, default=None, help="Default: SIDECAR_PORT (8001).")
@click.option("--mongo-db", default=None, help="Default: MONGO_DB.")
@click.option("--pg-database", default=None, help="P&L database name (default: spreadpilot).")
@click.option("--redis-db", type=int, default=None, help="Redis database number (default 0).")
@click.option("--project", default=None, help="Pub/Sub project (default: PUBSUB_PROJECT_ID).")
@click.option("--fresh", is_flag=True, help="Drop the databases' data first.")
@click.option(
    "--function-per-process",
    is_flag=True,
    help="One functions-framework process per target (as deployed) instead of one host.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Logs, alerts and env.sh (default: .devstack/local).",
)
def up(
    start: str | None,
    speed: float | None,
    seed: int,
    scenario: Path | None,
    followers: Path | None,
    sheet: Path | None,
    sidecar_port: int | None,
    mongo_db: str | None,
    pg_database: str | None,
    redis_db: int | None,
    project: str | None,
    fresh: bool,
    function_per_process: bool,
    log_dir: Path | None,
) -> None:
    """Run everything until Ctrl-C (SIGINT or SIGTERM stops every process it started)."""
    from spreadpilot.local.up import UpOptions, run_local_up

    options = UpOptions(
        start=_start(start),
        speed=speed,
        seed=seed,
        scenario=scenario,
        followers=followers,
        sheet=sheet,
        sidecar_port=sidecar_port,
        mongo_db=mongo_db,
        pg_database=pg_database,
        redis_db=redis_db,
        project=project,
        fresh=fresh,
        function_per_process=function_per_process,
        log_dir=log_dir,
    )
    sys.exit(run_local_up(options))


@local.command("env")
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where `local up` writes env.sh (default: .devstack/local).",
)
def env(log_dir: Path | None) -> None:
    """Print the export lines of the running stack: eval "$(spreadpilot local env)"."""
    from spreadpilot.devstack import layout

    path = (log_dir or layout().root / "local") / "env.sh"
    try:
        click.echo(path.read_text(encoding="utf-8"), nl=False)
    except FileNotFoundError:
        click.echo(f"error: {path} not found; is `spreadpilot local up` running?", err=True)
        sys.exit(1)
