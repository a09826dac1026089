"""``spreadpilot db``: the PostgreSQL schema (migrations) and the MongoDB indexes.

Both commands are idempotent, so deploy scripts and the local runner can run
them on every start. Connection strings are printed only with passwords masked.
"""

from __future__ import annotations

import click

from spreadpilot.cli._root import main


@main.group()
def db() -> None:
    """Create or update the databases' schema (safe to run any number of times)."""


@db.command()
@click.option(
    "--dsn",
    metavar="URL",
    default=None,
    help="PostgreSQL URL (default: PNL_DATABASE_URL).",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a concurrent migrate run to finish.",
)
def migrate(dsn: str | None, lock_timeout: float) -> None:
    """Apply the P&L database migrations not applied yet, in order."""
    from spreadpilot.adapters.postgres import DsnError, Postgres
    from spreadpilot.config import get_settings, redacted_url
    from spreadpilot.storage.migrate import MigrationError
    from spreadpilot.storage.migrate import migrate as run_migrations

    url = dsn or get_settings().pnl_database_url
    try:
        pg = Postgres(url)
        report = run_migrations(pg, lock_timeout=lock_timeout)
    except (DsnError, MigrationError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(
            f"cannot migrate {redacted_url(url)}: {type(exc).__name__}: {exc}"
        ) from None
    for migration in report.applied:
        click.echo(f"applied {migration.filename}")
    state = "up to date" if not report.applied else "migrated"
    click.echo(f"{redacted_url(url)}: {state} at version {report.current_version}")


@db.command("status")
@click.option(
    "--dsn", metavar="URL", default=None, help="PostgreSQL URL (default: PNL_DATABASE_URL)."
)
def status(dsn: str | None) -> None:
    """List the migrations and whether each is applied (exit 1 if any is pending)."""
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.config import get_settings, redacted_url
    from spreadpilot.storage.migrate import applied_versions, load_migrations

    url = dsn or get_settings().pnl_database_url
    try:
        con = Postgres(url).connect()
        try:
            done = applied_versions(con)
        finally:
            con.close()
    except Exception as exc:
        raise click.ClickException(
            f"cannot read {redacted_url(url)}: {type(exc).__name__}: {exc}"
        ) from None
    pending = 0
    for migration in load_migrations():
        applied = migration.version in done
        pending += not applied
        click.echo(f"{'applied' if applied else 'pending'}  {migration.filename}")
    if pending:
        raise SystemExit(1)


@db.command("init")
@click.option("--mongo-uri", metavar="URI", default=None, help="MongoDB URI (default: MONGO_URI).")
@click.option("--mongo-db", metavar="NAME", default=None, help="Database (default: MONGO_DB).")
def init(mongo_uri: str | None, mongo_db: str | None) -> None:
    """Create the MongoDB indexes (the unique ones are the exactly-once guarantees)."""
    from spreadpilot.adapters.mongo import connect, database
    from spreadpilot.config import get_settings, redacted_url
    from spreadpilot.storage.alerts import AlertsRepository
    from spreadpilot.storage.executions import ExecutionsRepository
    from spreadpilot.storage.followers import FollowersRepository
    from spreadpilot.storage.signals import SignalsLedger

    settings = get_settings()
    uri = mongo_uri or settings.mongo_uri
    name = mongo_db or settings.mongo_db
    client = connect(uri)
    try:
        mdb = database(client, name)
        for label, repo in (
            ("followers", FollowersRepository(mdb)),
            ("executions", ExecutionsRepository(mdb)),
            ("signals", SignalsLedger(mdb)),
            ("alerts", AlertsRepository(mdb)),
        ):
            repo.ensure_indexes()
            click.echo(f"indexes ready: {label}")
    except Exception as exc:
        raise click.ClickException(
            f"cannot initialise {redacted_url(uri)} database {name}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        client.close()
