"""PostgreSQL through pg8000 (pure Python, so it runs in Cloud Functions unchanged).

Why a wrapper at all: a Cloud Function or the sidecar keeps one connection
warm between calls, and that connection may die under it (Cloud SQL restarts,
idle cuts). Every repository call is idempotent, so ``Postgres.run`` retries a
unit of work once on a fresh connection when the old one turned out to be
dead, instead of making every caller handle it. Units of work run inside an
explicit transaction; pg8000's native API is otherwise autocommit.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.exceptions
import pg8000.native

log = logging.getLogger(__name__)

T = TypeVar("T")


class Connection(Protocol):
    """The part of ``pg8000.native.Connection`` we use (pg8000 ships no type hints)."""

    @property
    def columns(self) -> list[dict[str, Any]] | None: ...

    def run(self, sql: str, stream: Any = None, types: Any = None, **params: Any) -> Any: ...

    def close(self) -> None: ...


_DEFAULT_PORT = 5432


class DsnError(ValueError):
    """The DSN cannot be understood; the message never contains the password."""


@dataclass(frozen=True)
class PgParams:
    """Connection parameters parsed from a ``postgresql://`` DSN."""

    user: str
    password: str | None
    host: str
    port: int
    database: str
    unix_sock: str | None = None
    sslmode: str | None = None

    def redacted(self) -> str:
        """The DSN with the password masked, safe for logs and errors."""
        where = self.unix_sock or f"{self.host}:{self.port}"
        secret = ":***" if self.password else ""
        return f"postgresql://{self.user}{secret}@{where}/{self.database}"


def parse_dsn(dsn: str) -> PgParams:
    """Parse ``postgresql://user:pass@host:port/db[?sslmode=..&host=/socket/dir]``.

    A ``host`` query parameter that is a directory selects a Unix socket, the
    way Cloud SQL connectors expose an instance (``/cloudsql/project:region:db``).
    """
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise DsnError(f"expected a postgresql:// DSN, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    user = unquote(parts.username or query.get("user", "") or "")
    if not user:
        raise DsnError("the PostgreSQL DSN names no user")
    password = unquote(parts.password) if parts.password else query.get("password")
    database = unquote(parts.path.lstrip("/")) or query.get("dbname", "") or user
    try:
        port = parts.port or int(query.get("port", _DEFAULT_PORT))
    except ValueError as exc:
        raise DsnError("the PostgreSQL DSN has an invalid port") from exc
    socket_dir = query.get("host", "")
    unix_sock = f"{socket_dir.rstrip('/')}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
    host = parts.hostname or "127.0.0.1"
    return PgParams(
        user=user,
        password=password,
        host=host,
        port=port,
        database=database,
        unix_sock=unix_sock,
        sslmode=query.get("sslmode"),
    )


def _ssl_context(sslmode: str | None) -> ssl.SSLContext | None:
    """libpq's sslmode mapped onto an SSL context (None = plain TCP)."""
    if sslmode in (None, "", "disable", "allow", "prefer"):
        return None
    context = ssl.create_default_context()
    if sslmode in ("require", "verify-ca"):
        # libpq's "require" encrypts without checking the certificate.
        context.check_hostname = False
        if sslmode == "require":
            context.verify_mode = ssl.CERT_NONE
    return context


def _is_connection_lost(exc: BaseException) -> bool:
    """True for failures that mean the socket is gone, not that the SQL was wrong."""
    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError | EOFError):
        return True
    return isinstance(exc, pg8000.exceptions.DatabaseError) and "network error" in str(exc).lower()


class Postgres:
    """One lazily opened connection to a PostgreSQL database, used one unit at a time.

    Thread-safe by serialising units of work on a lock: the repositories issue
    short statements, so a pool would buy nothing for a function or a CLI. The
    sidecar creates one ``Postgres`` per worker thread if it ever needs more.
    """

    def __init__(
        self,
        dsn: str,
        *,
        timeout: float = 10.0,
        application_name: str = "spreadpilot",
    ) -> None:
        self._params = parse_dsn(dsn)
        self._timeout = timeout
        self._application_name = application_name
        self._lock = threading.RLock()
        self._con: Connection | None = None

    def __repr__(self) -> str:
        return f"Postgres({self._params.redacted()})"

    @property
    def params(self) -> PgParams:
        """The parsed DSN (use ``redacted()`` before printing it)."""
        return self._params

    def connect(self) -> Connection:
        """Open a new, independent connection (autocommit; the caller closes it)."""
        p = self._params
        con = pg8000.native.Connection(
            user=p.user,
            password=p.password,
            host=p.host,
            port=p.port,
            database=p.database,
            unix_sock=p.unix_sock,
            ssl_context=_ssl_context(p.sslmode),
            timeout=self._timeout,
            application_name=self._application_name,
        )
        return cast(Connection, con)

    def _connection(self) -> Connection:
        if self._con is None:
            self._con = self.connect()
        return self._con

    def _drop(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            try:
                con.close()
            except Exception:  # the socket is already dead; nothing to save
                log.debug("closing a dead PostgreSQL connection failed", exc_info=True)

    def close(self) -> None:
        """Close the held connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run the block in one transaction on the held connection (no retry)."""
        with self._lock:
            con = self._connection()
            try:
                con.run("START TRANSACTION")
                yield con
                con.run("COMMIT")
            except BaseException as exc:
                if _is_connection_lost(exc):
                    self._drop()
                else:
                    try:
                        con.run("ROLLBACK")
                    except Exception:
                        self._drop()
                raise

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a transaction, retrying once if the connection was dead.

        ``work`` must be idempotent (every repository method is): when the
        connection drops mid-way the transaction was rolled back by the server.
        """
        try:
            with self.transaction() as con:
                return work(con)
        except Exception as exc:
            if not _is_connection_lost(exc):
                raise
            log.warning(
                "postgres connection lost, retrying once",
                extra={"db": self._params.redacted(), "error": type(exc).__name__},
            )
        with self.transaction() as con:
            return work(con)

    def query(self, sql: str, **params: Any) -> list[list[Any]]:
        """One statement in its own transaction; returns the rows (empty if none)."""

        def _work(con: Connection) -> list[list[Any]]:
            rows = con.run(sql, **params)
            return cast(list[list[Any]], rows or [])

        return self.run(_work)


def rows_as_dicts(con: Connection, rows: list[list[Any]] | None) -> list[dict[str, Any]]:
    """Name the columns of the rows returned by the last ``con.run``."""
    if not rows:
        return []
    names = [c["name"] for c in (con.columns or [])]
    return [dict(zip(names, row, strict=True)) for row in rows]
