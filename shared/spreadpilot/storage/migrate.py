"""Versioned SQL migrations for the P&L database.

Why not an ORM tool: the schema is small, and plain SQL files reviewed as SQL
are what a person reads when money is in the tables. Rules:
- files ``NNNN_name.sql`` in ``spreadpilot/migrations``, versions 1..N with no
  gap (a gap usually means a file was lost in a merge);
- each applied once, in version order, in its own transaction together with
  its row in ``schema_migrations``, so a failure leaves no half-applied file;
- a session-level advisory lock serialises concurrent ``migrate`` runs (two
  Cloud Run revisions starting at once);
- the checksum of each applied file is stored; an applied file that changed
  is an error, never silently skipped.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from spreadpilot.adapters.postgres import Connection, Postgres

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "spreadpilot.migrations"
# Arbitrary but fixed: every migrate run of every process contends on it.
ADVISORY_LOCK_KEY = 0x5350_4D49_4752  # "SPMIGR"

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql$")

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration set is inconsistent or the database disagrees with it."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, text and checksum."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the SQL text, stored when applied."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass
class MigrationReport:
    """What a ``migrate`` run did."""

    applied: list[Migration] = field(default_factory=list)
    already_applied: list[int] = field(default_factory=list)

    @property
    def current_version(self) -> int:
        versions = [m.version for m in self.applied] + self.already_applied
        return max(versions, default=0)


def parse_migration_filename(filename: str) -> tuple[int, str]:
    """``0003_pnl_monthly.sql`` -> ``(3, "pnl_monthly")``; anything else is an error."""
    match = _NAME.match(filename)
    if match is None:
        raise MigrationError(f"migration file {filename!r} is not named NNNN_lowercase_name.sql")
    return int(match["version"]), match["name"]


def order_migrations(files: dict[str, str]) -> list[Migration]:
    """Validate and sort ``{filename: sql}``: versions must be unique and 1..N.

    Non-``.sql`` entries (``__init__.py``, READMEs) are ignored.
    """
    migrations: dict[int, Migration] = {}
    for filename, sql in files.items():
        if not filename.endswith(".sql"):
            continue
        version, name = parse_migration_filename(filename)
        if version in migrations:
            raise MigrationError(
                f"two migrations share version {version}: "
                f"{migrations[version].filename} and {filename}"
            )
        if not sql.strip():
            raise MigrationError(f"migration {filename} is empty")
        migrations[version] = Migration(version=version, name=name, sql=sql)
    ordered = [migrations[v] for v in sorted(migrations)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration versions must run 1..N without gaps: expected {expected:04d}, "
                f"found {migration.filename}"
            )
    return ordered


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The packaged migrations (or those in ``directory``), validated and ordered."""
    files: dict[str, str] = {}
    if directory is not None:
        for path in directory.iterdir():
            if path.is_file():
                files[path.name] = path.read_text(encoding="utf-8")
    else:
        for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
            if entry.is_file():
                files[entry.name] = entry.read_text(encoding="utf-8")
    return order_migrations(files)


def _acquire_lock(con: Connection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = con.run("SELECT pg_try_advisory_lock(:k)", k=ADVISORY_LOCK_KEY)
        if rows and rows[0][0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another migrate run holds the migration lock for more than {timeout:.0f} s"
            )
        time.sleep(0.1)


def applied_versions(con: Connection) -> dict[int, str]:
    """``{version: checksum}`` of what the database says is applied."""
    con.run(SCHEMA_MIGRATIONS_DDL)
    rows = con.run("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(r[0]): str(r[1]) for r in rows or []}


def migrate(
    pg: Postgres,
    migrations: list[Migration] | None = None,
    *,
    lock_timeout: float = 60.0,
) -> MigrationReport:
    """Apply every migration not yet applied; safe to run again and concurrently."""
    todo = load_migrations() if migrations is None else migrations
    report = MigrationReport()
    con = pg.connect()  # own session: the advisory lock is held per session
    try:
        _acquire_lock(con, lock_timeout)
        try:
            done = applied_versions(con)
            known = {m.version for m in todo}
            unknown = sorted(set(done) - known)
            if unknown:
                log.warning(
                    "database has migrations this build does not know",
                    extra={"versions": unknown},
                )
            for migration in todo:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.filename} was changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    report.already_applied.append(migration.version)
                    continue
                con.run("START TRANSACTION")
                try:
                    con.run(migration.sql)
                    con.run(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (:v, :n, :c)",
                        v=migration.version,
                        n=migration.name,
                        c=migration.checksum,
                    )
                    con.run("COMMIT")
                except Exception as exc:
                    con.run("ROLLBACK")
                    raise MigrationError(f"migration {migration.filename} failed: {exc}") from exc
                log.info("applied migration", extra={"migration": migration.filename})
                report.applied.append(migration)
        finally:
            con.run("SELECT pg_advisory_unlock(:k)", k=ADVISORY_LOCK_KEY)
    finally:
        con.close()
    return report
