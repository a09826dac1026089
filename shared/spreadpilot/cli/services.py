"""``spreadpilot services``: the local PostgreSQL, Redis, FerretDB and Pub/Sub fake.

Progress and errors go to stderr and results to stdout, so that
``eval "$(spreadpilot services env)"`` and scripts reading ``status`` get clean
output.
"""

from __future__ import annotations

import sys
import time

import click

from spreadpilot.cli._root import main
from spreadpilot.devstack import (
    SERVICE_NAMES,
    DevstackError,
    ServiceStatus,
    ensure_services,
    install_services,
    service_env,
    services_status,
    stop_services,
)

_names = click.argument(
    "names", nargs=-1, type=click.Choice(SERVICE_NAMES), metavar=f"[{'|'.join(SERVICE_NAMES)}]..."
)


def _report(message: str) -> None:
    click.echo(message, err=True)


def _fail(exc: DevstackError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _print_status(rows: list[ServiceStatus]) -> None:
    click.echo(f"{'service':<10} {'state':<6} {'port':>6} {'pid':>8}  detail")
    for row in rows:
        state = "up" if row.running else "down"
        pid = str(row.pid) if row.pid is not None else "-"
        click.echo(f"{row.name:<10} {state:<6} {row.port:>6} {pid:>8}  {row.detail}")


@main.group()
def services() -> None:
    """Run the local services on 127.0.0.1 (data and logs under .devstack/).

    Ports: SP_PG_PORT (55432), SP_REDIS_PORT (56379), SP_MONGO_PORT (57017),
    SP_MONGO_STORAGE_PORT (57018, FerretDB's own PostgreSQL), SP_PUBSUB_PORT (58085).
    SP_DEVSTACK_DIR moves .devstack/.
    """


@services.command()
@_names
@click.option("--timeout", type=float, default=None, help="Seconds to wait for each service.")
def up(names: tuple[str, ...], timeout: float | None) -> None:
    """Install what is missing, start what is stopped, wait until all answer."""
    started = time.monotonic()
    try:
        ensure_services(names or None, report=_report, timeout=timeout)
        rows = services_status(names or None, probe=False)
    except DevstackError as exc:
        _fail(exc)
        return
    _print_status(rows)
    _report(
        f"all up in {time.monotonic() - started:.1f} s; "
        'load the variables with: eval "$(spreadpilot services env)"'
    )


@services.command()
@_names
def down(names: tuple[str, ...]) -> None:
    """Stop the services (data is kept; delete .devstack/ to reset)."""
    try:
        stopped = stop_services(names or None, report=_report)
    except DevstackError as exc:
        _fail(exc)
        return
    if not stopped:
        _report("nothing was running")


@services.command()
@_names
def status(names: tuple[str, ...]) -> None:
    """Show each service: up/down, port, pid. Exit status 3 if any is down."""
    try:
        rows = services_status(names or None)
    except DevstackError as exc:
        _fail(exc)
        return
    _print_status(rows)
    if not all(r.running for r in rows):
        sys.exit(3)


@services.command()
def env() -> None:
    """Print `export` lines for the application's variables (for `eval`)."""
    try:
        lines = service_env().export_lines()
    except DevstackError as exc:
        _fail(exc)
        return
    for line in lines:
        click.echo(line)


@services.command()
@_names
def install(names: tuple[str, ...]) -> None:
    """Install the Debian packages and build the Go servers; start nothing."""
    try:
        install_services(names or None, report=_report)
    except DevstackError as exc:
        _fail(exc)
        return
    _report("installed")
