"""The four local servers: PostgreSQL, Redis, FerretDB and the Pub/Sub fake.

Each is the real thing (or, for Pub/Sub, Google's own fake) listening on
127.0.0.1 only, with its data, pidfile and log under ``.devstack/<name>/``.
Ports default to values far from the usual ones (55432, 56379, 57017, 58085)
so the stack never collides with a system PostgreSQL or Redis, and each can be
moved with an ``SP_*_PORT`` variable.

Readiness is checked with each server's own protocol (a pg8000 login, a Redis
PING, a MongoDB ping, a Pub/Sub ListTopics call): an open TCP port only says a
process has bound it, not that it will answer the clients under test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import struct
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from spreadpilot.devstack import install
from spreadpilot.devstack.paths import DevstackError, Layout, layout
from spreadpilot.devstack.process import (
    file_lock,
    pid_alive,
    port_open,
    read_pid,
    spawn_detached,
    tail,
    terminate,
    wait_until,
)

Report = Callable[[str], None]

HOST = "127.0.0.1"
PG_USER = "spreadpilot"
# A fixed, well-known password is fine: the server listens on loopback only and
# holds throw-away data. It exists because the production path is password
# authentication over TCP (Cloud SQL + pg8000), which is what we want to test.
PG_PASSWORD = "spreadpilot"
PG_DATABASE = "spreadpilot"
MONGO_DATABASE = "spreadpilot"
PUBSUB_PROJECT_ID = "spreadpilot-local"

SERVICE_NAMES: tuple[str, ...] = ("postgres", "redis", "ferretdb", "pubsub")

_PORT_ENV: dict[str, tuple[str, int]] = {
    "postgres": ("SP_PG_PORT", 55432),
    "redis": ("SP_REDIS_PORT", 56379),
    "ferretdb": ("SP_MONGO_PORT", 57017),
    "pubsub": ("SP_PUBSUB_PORT", 58085),
    # FerretDB's own PostgreSQL cluster: part of the ferretdb service, not a service.
    "ferretdb-pg": ("SP_MONGO_STORAGE_PORT", 57018),
}
#: Every ``SP_*_PORT`` variable: a stack beside the default one must set them all.
PORT_VARIABLES: tuple[str, ...] = tuple(var for var, _ in _PORT_ENV.values())
#: The database FerretDB keeps its collections in (one schema per MongoDB database).
FERRETDB_PG_DATABASE = "ferretdb"


def _quiet(_: str) -> None:
    return None


def configured_port(name: str) -> int:
    """The port for service ``name``: its ``SP_*_PORT`` variable or the default."""
    var, default = _PORT_ENV[name]
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise DevstackError(f"{var}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise DevstackError(f"{var}={port} is out of range")
    return port


@dataclass(frozen=True)
class ServiceEnv:
    """Where the local services are, in the variables the application reads."""

    pg_port: int
    redis_port: int
    mongo_port: int
    pubsub_port: int
    pubsub_project_id: str = PUBSUB_PROJECT_ID

    def pg_dsn(self, database: str = PG_DATABASE) -> str:
        """A pg8000-style DSN for ``database`` on the local server."""
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.pg_port}/{database}"

    @property
    def pnl_database_url(self) -> str:
        """DSN of the P&L database (``PNL_DATABASE_URL``)."""
        return self.pg_dsn()

    @property
    def redis_url(self) -> str:
        """``REDIS_URL``."""
        return f"redis://{HOST}:{self.redis_port}/0"

    @property
    def mongo_uri(self) -> str:
        """``MONGO_URI``; its path names the default database."""
        return f"mongodb://{HOST}:{self.mongo_port}/{MONGO_DATABASE}"

    @property
    def pubsub_emulator_host(self) -> str:
        """``PUBSUB_EMULATOR_HOST``: the Google client libraries switch to it when set."""
        return f"{HOST}:{self.pubsub_port}"

    def environ(self) -> dict[str, str]:
        """The variables to export so application code finds the local services."""
        return {
            "PNL_DATABASE_URL": self.pnl_database_url,
            "REDIS_URL": self.redis_url,
            "MONGO_URI": self.mongo_uri,
            "MONGO_DB": MONGO_DATABASE,
            "PUBSUB_EMULATOR_HOST": self.pubsub_emulator_host,
            "PUBSUB_PROJECT_ID": self.pubsub_project_id,
        }

    def export_lines(self) -> list[str]:
        """``export NAME=value`` lines, safe to ``eval`` in a POSIX shell."""
        import shlex

        return [f"export {k}={shlex.quote(v)}" for k, v in self.environ().items()]


def service_env() -> ServiceEnv:
    """The environment for the configured ports, whether or not servers run."""
    return ServiceEnv(
        pg_port=configured_port("postgres"),
        redis_port=configured_port("redis"),
        mongo_port=configured_port("ferretdb"),
        pubsub_port=configured_port("pubsub"),
    )


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` reports for one service."""

    name: str
    running: bool
    pid: int | None
    port: int
    log_path: Path
    detail: str = ""


# ---------------------------------------------------------------- base class


class Service(ABC):
    """One local server: how to start, stop and ask it whether it is ready."""

    name: ClassVar[str]
    #: Substring of /proc/<pid>/cmdline that identifies our server process.
    process_marker: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0

    def __init__(self, lay: Layout, port: int) -> None:
        self.lay = lay
        self.port = port
        self.dir = lay.service_dir(self.name)

    # -- files

    @property
    def log_path(self) -> Path:
        """The server's log; quoted in every start failure."""
        return self.dir / f"{self.name}.log"

    @property
    def port_file(self) -> Path:
        """The port the running server was started with (ports can be changed)."""
        return self.dir / "port"

    @property
    @abstractmethod
    def pidfile(self) -> Path:
        """Where the server's pid is recorded."""

    def recorded_port(self) -> int | None:
        """The port the running server was started on, if known."""
        return read_pid(self.port_file)

    def pid(self) -> int | None:
        """Pid of our running server, or None."""
        pid = read_pid(self.pidfile)
        if pid is not None and pid_alive(pid, self.process_marker):
            return pid
        return None

    # -- behaviour

    @abstractmethod
    def ensure_installed(self, report: Report) -> None:
        """Install the server software if it is missing."""

    @abstractmethod
    def start(self, report: Report) -> None:
        """Launch the server detached; readiness is awaited by the caller."""

    @abstractmethod
    def probe(self, timeout: float = 2.0) -> bool:
        """Whether the server answers its own protocol on ``self.port``."""

    def after_ready(self) -> None:
        """One-time setup that needs a running server (e.g. creating a database)."""
        return None

    def stop(self) -> bool:
        """Stop the server; return whether one was running."""
        pid = self.pid()
        if pid is None:
            return False
        terminate(pid, expect_in_cmdline=self.process_marker)
        return True

    # -- shared orchestration

    def log_header(self, what: str) -> None:
        """Mark a start in the log, so a tail shows where this attempt begins."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self.log_path.open("a") as fh:
            fh.write(f"\n---- {stamp} {what} (port {self.port})\n")

    def failure(self, message: str) -> DevstackError:
        """An error naming the service and its log, with the log's tail attached."""
        return DevstackError(
            f"{self.name}: {message}\nlog: {self.log_path}\n"
            f"--- last lines of the log ---\n{tail(self.log_path)}"
        )

    def ensure(self, report: Report, timeout: float | None = None) -> None:
        """Make the server run on ``self.port`` and answer; idempotent."""
        timeout = self.start_timeout if timeout is None else timeout
        pid = self.pid()
        if pid is not None and self.recorded_port() not in (None, self.port):
            report(
                f"{self.name}: running on port {self.recorded_port()}, restarting on {self.port}"
            )
            self.stop()
            pid = None
        if pid is not None:
            if self.probe(timeout=1.0) or wait_until(
                self.probe, timeout=timeout, interval=0.2, still_worth_waiting=self.is_up
            ):
                self.after_ready()
                return
            raise self.failure(f"process {pid} is running but does not answer on port {self.port}")
        if port_open(HOST, self.port):
            var = _PORT_ENV[self.name][0]
            raise DevstackError(
                f"{self.name}: port {self.port} on {HOST} is already taken by a process this "
                f"stack did not start; stop it or choose another port with {var}"
            )
        self.ensure_installed(report)
        report(f"{self.name}: starting on {HOST}:{self.port}")
        self.dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.start(report)
        if not wait_until(
            self.probe, timeout=timeout, interval=0.1, still_worth_waiting=self.may_come_up
        ):
            alive = self.pid() is not None
            raise self.failure(
                f"did not become ready on port {self.port} within {timeout:.0f} s"
                if alive
                else "the server exited during start-up"
            )
        self.port_file.write_text(f"{self.port}\n")
        self.after_ready()
        report(f"{self.name}: ready in {time.monotonic() - started:.1f} s")

    def is_up(self) -> bool:
        """Whether our server process is alive."""
        return self.pid() is not None

    def may_come_up(self) -> bool:
        """While starting: False once it is clear the server died."""
        return self.is_up()

    def status(self, *, probe: bool = True) -> ServiceStatus:
        """Current state; with ``probe``, also whether the server answers."""
        pid = self.pid()
        port = (self.recorded_port() or self.port) if pid is not None else self.port
        if pid is None:
            return ServiceStatus(self.name, False, None, port, self.log_path, "not running")
        if not probe:
            return ServiceStatus(self.name, True, pid, port, self.log_path, "running")
        saved, self.port = self.port, port
        try:
            answering = self.probe(timeout=1.0)
        finally:
            self.port = saved
        detail = "ready" if answering else "running but not answering"
        return ServiceStatus(self.name, answering, pid, port, self.log_path, detail)


# ---------------------------------------------------------------- PostgreSQL


class Postgres(Service):
    """A private PostgreSQL cluster under ``.devstack/postgres``.

    PostgreSQL refuses to run as root, so when we are root the cluster belongs
    to the ``postgres`` system user that Debian's package creates and every
    server command runs as that user.
    """

    name = "postgres"
    process_marker = "postgres"
    start_timeout = 60.0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.dir / "data"

    @property
    def pidfile(self) -> Path:
        """PostgreSQL writes its own pidfile into the data directory."""
        return self.data_dir / "postmaster.pid"

    def _bindir(self) -> Path:
        bindir = install.find_pg_bindir()
        if bindir is None:
            raise DevstackError(
                "postgres: initdb/pg_ctl not found; run `spreadpilot services install`"
            )
        return bindir

    def _owner(self) -> pwd.struct_passwd | None:
        """The account the server runs as, or None to run as ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise DevstackError(
                "postgres: running as root, and PostgreSQL refuses to; no `postgres` "
                "system user exists to run it as (Debian's postgresql package creates one)"
            ) from None

    def _run(self, argv: Sequence[str], *, what: str, check_log: bool = True) -> None:
        owner = self._owner()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
        }
        kwargs: dict[str, Any] = {}
        if owner is not None:
            kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
            env["HOME"] = owner.pw_dir
        done = subprocess.run(
            list(argv),
            env=env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
            **kwargs,
        )
        if done.returncode != 0:
            with self.log_path.open("a") as fh:
                fh.write(done.stdout + done.stderr)
            raise self.failure(f"{what} failed (exit {done.returncode})")

    def _chown(self, path: Path) -> None:
        owner = self._owner()
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def ensure_installed(self, report: Report) -> None:
        """Install Debian's postgresql package if initdb/pg_ctl are missing."""
        install.ensure_debian_packages(postgres=True, redis=False, report=report)

    def _initdb(self, report: Report) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        report("postgres: creating the cluster (initdb)")
        # A data directory without PG_VERSION is a half-finished initdb.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._chown(self.dir)
        pwfile = self.dir / "initdb.pw"
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        self._chown(self.log_path)
        try:
            self._run(
                [
                    str(self._bindir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# Local development settings, rewritten on every start.\n")
            fh.write("include_if_exists = 'devstack.conf'\n")

    def _write_conf(self) -> None:
        # No Unix socket: every client, like production's pg8000, uses TCP with a
        # password, and a socket directory is one more path that could collide.
        # Durability is traded for speed: this data is disposable and the test
        # suite creates and drops a database per test.
        conf = self.data_dir / "devstack.conf"
        conf.write_text(
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "log_min_messages = warning\n"
        )
        self._chown(conf)

    def _check_reachable(self) -> None:
        """Fail early, and say why, when the server account cannot reach our directory.

        Typical cause: SP_DEVSTACK_DIR under a root-only directory such as
        /root or pytest's tmp_path; initdb's own error hides that behind a
        "Permission denied" on a file we just wrote.
        """
        owner = self._owner()
        if owner is None:
            return
        done = subprocess.run(
            ["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "sh", str(self.dir)],
            user=owner.pw_uid,
            group=owner.pw_gid,
            extra_groups=[],
            check=False,
        )
        if done.returncode != 0:
            raise DevstackError(
                f"postgres: the `{owner.pw_name}` account cannot reach {self.dir} (a parent "
                "directory is closed to it). PostgreSQL cannot run as root, so it runs as "
                f"`{owner.pw_name}`: put SP_DEVSTACK_DIR where that account can reach it"
            )

    def start(self, report: Report) -> None:
        """initdb if needed, then ``pg_ctl start`` (which waits for readiness)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_header("starting postgres")
        self._chown(self.dir)
        self._check_reachable()
        self._chown(self.log_path)
        self._initdb(report)
        self._write_conf()
        self._run(
            [
                str(self._bindir() / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-s",
                "start",
            ],
            what="pg_ctl start",
        )

    def stop(self) -> bool:
        """``pg_ctl stop -m fast``: rolls back open transactions, then exits."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            self._run(
                [
                    str(self._bindir() / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-s",
                    "stop",
                ],
                what="pg_ctl stop",
            )
        except DevstackError:
            terminate(pid, expect_in_cmdline=self.process_marker)
        return True

    def connect(self, database: str = "postgres", timeout: float = 2.0) -> Any:
        """A pg8000 native connection as the cluster's superuser."""
        import pg8000.native

        return pg8000.native.Connection(
            user=PG_USER,
            password=PG_PASSWORD,
            host=HOST,
            port=self.port,
            database=database,
            timeout=timeout,
        )

    def probe(self, timeout: float = 2.0) -> bool:
        """Log in over TCP with the password and run ``SELECT 1``."""
        import pg8000.exceptions

        try:
            conn = self.connect(timeout=timeout)
        except (OSError, pg8000.exceptions.InterfaceError, pg8000.exceptions.DatabaseError):
            return False
        try:
            return bool(conn.run("SELECT 1") == [[1]])
        finally:
            conn.close()

    #: the database ``after_ready`` creates
    database: ClassVar[str] = PG_DATABASE

    def after_ready(self) -> None:
        """Create the application database once."""
        conn = self.connect()
        try:
            if not conn.run("SELECT 1 FROM pg_database WHERE datname = :d", d=self.database):
                conn.run(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()


class FerretStorage(Postgres):
    """FerretDB's backend: a PostgreSQL cluster of its own under ``.devstack/ferretdb-pg``.

    Why not the application's cluster: stopping PostgreSQL (the chaos suite
    does, and so does a developer) must not take MongoDB down with it. In
    production they are two services (Cloud SQL, Atlas) that fail apart.
    """

    name = "ferretdb-pg"
    database = FERRETDB_PG_DATABASE

    def url(self) -> str:
        return f"postgres://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.port}/{self.database}"

    def _write_conf(self) -> None:
        super()._write_conf()
        # Plan every query with its values: FerretDB passes even the field
        # name as a parameter (``_jsonb->$1 @> $2``), and only a plan made with
        # the values can match the expression indexes below.
        with (self.data_dir / "devstack.conf").open("a") as fh:
            fh.write("plan_cache_mode = force_custom_plan\n")

    def after_ready(self) -> None:
        """Create FerretDB's database once, and make its lookups use indexes.

        Why: FerretDB 1.24 looks documents up with ``_jsonb->'field' @> value``
        while the indexes it builds (``_id`` and every ``create_index``) are
        btrees on ``_jsonb->'field'``, which serve ``=`` only. So every find,
        and the read before every update, scanned the whole collection and
        decompressed each document: a compare-and-set on one execution record
        took 0.2 ms in an empty collection and 3.7 ms with 5,000 records,
        growing with every signal. MongoDB answers those from the index. An
        event trigger gives each such btree a GIN twin over the same fields
        (``jsonb_path_ops`` serves ``@>``); the lookup then takes 0.06 ms at
        any size. FerretDB neither sees nor lists these twins, and they go
        when it drops the collection. Tables made before the trigger existed
        get theirs here too.
        """
        super().after_ready()
        conn = self.connect(self.database)
        try:
            for statement in _FERRET_LOOKUP_INDEXES:
                conn.run(statement)
        finally:
            conn.close()


#: SQL run on FerretDB's database after every start (idempotent); see
#: ``FerretStorage.after_ready``.
_FERRET_LOOKUP_INDEXES = (
    """
    CREATE OR REPLACE FUNCTION devstack_gin_twin(btree oid) RETURNS void
    LANGUAGE plpgsql AS $fn$
    DECLARE
        table_oid oid;
        columns int;
        expr text;
    BEGIN
        SELECT i.indrelid, i.indnatts INTO table_oid, columns
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam
        WHERE i.indexrelid = btree AND am.amname = 'btree' AND i.indexprs IS NOT NULL;
        IF table_oid IS NULL THEN
            RETURN;
        END IF;
        FOR k IN 1..columns LOOP
            expr := pg_get_indexdef(btree, k, false);
            IF position('_jsonb -> ' in expr) > 0 THEN
                EXECUTE format(
                    'CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((%s) jsonb_path_ops)',
                    'gin_' || md5(table_oid::text || expr),
                    table_oid::regclass,
                    expr
                );
            END IF;
        END LOOP;
    END
    $fn$
    """,
    """
    CREATE OR REPLACE FUNCTION devstack_gin_twins_on_create() RETURNS event_trigger
    LANGUAGE plpgsql AS $fn$
    DECLARE
        cmd record;
    BEGIN
        FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
                   WHERE command_tag = 'CREATE INDEX' LOOP
            PERFORM devstack_gin_twin(cmd.objid);
        END LOOP;
    END
    $fn$
    """,
    "DROP EVENT TRIGGER IF EXISTS devstack_gin_twins",
    """
    CREATE EVENT TRIGGER devstack_gin_twins ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION devstack_gin_twins_on_create()
    """,
    """
    SELECT devstack_gin_twin(i.indexrelid)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE i.indexprs IS NOT NULL
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    """,
)


# ---------------------------------------------------------------- Redis


class Redis(Service):
    """Debian's redis-server with our own config, daemonised with a pidfile."""

    name = "redis"
    process_marker = "redis-server"

    @property
    def pidfile(self) -> Path:
        """Written by redis-server itself."""
        return self.dir / "redis.pid"

    def ensure_installed(self, report: Report) -> None:
        """Install Debian's redis-server package if the binary is missing."""
        install.ensure_debian_packages(postgres=False, redis=True, report=report)

    def start(self, report: Report) -> None:
        """Write the config and let redis-server daemonise itself."""
        server = install.find_redis_server()
        if server is None:
            raise DevstackError("redis: redis-server not found; run `spreadpilot services install`")
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.log_header("starting redis-server")
        self.pidfile.unlink(missing_ok=True)

        def q(p: Path) -> str:
            return '"' + str(p).replace("\\", "\\\\").replace('"', '\\"') + '"'

        conf = self.dir / "redis.conf"
        # No persistence: the stream and locks are scratch data locally, and an
        # RDB save on shutdown would only slow `down`.
        conf.write_text(
            f"bind {HOST}\n"
            f"port {self.port}\n"
            "protected-mode yes\n"
            "daemonize yes\n"
            f"pidfile {q(self.pidfile)}\n"
            f"logfile {q(self.log_path)}\n"
            f"dir {q(data)}\n"
            'save ""\n'
            "appendonly no\n"
        )
        done = subprocess.run(
            [str(server), str(conf)],
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            with self.log_path.open("a") as fh:
                fh.write(done.stdout + done.stderr)
            raise self.failure(f"redis-server exited with {done.returncode}")

    def may_come_up(self) -> bool:
        """The pidfile appears a moment after daemonising; allow for that."""
        return not self.pidfile.exists() or self.is_up()

    def probe(self, timeout: float = 2.0) -> bool:
        """Send a RESP ``PING`` and expect ``+PONG``.

        Spoken directly rather than through redis-py to keep a warm ``up``
        well under two seconds (importing redis-py alone takes most of one).
        """
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# ---------------------------------------------------------------- Go-built servers


class _GoService(Service):
    """A server built from ``tools/`` and launched detached with our pidfile."""

    binary: ClassVar[str]

    @property
    def pidfile(self) -> Path:
        """Written by us right after launching."""
        return self.dir / f"{self.name}.pid"

    @property
    def executable(self) -> Path:
        """The built binary under ``.devstack/bin``."""
        return self.lay.bin_dir / self.binary

    def ensure_installed(self, report: Report) -> None:
        """Build (or take from the per-user cache) this server's binary if stale."""
        install.ensure_binary(self.binary, lay=self.lay, report=report)

    @abstractmethod
    def argv(self) -> list[str]:
        """Command line of the server."""

    def start(self, report: Report) -> None:
        """Launch detached and record the pid."""
        self.log_header(f"starting {self.binary}")
        pid = spawn_detached(self.argv(), log_path=self.log_path, cwd=self.dir)
        self.pidfile.write_text(f"{pid}\n")


class FerretDB(_GoService):
    """FerretDB on its PostgreSQL backend: a MongoDB wire-protocol server.

    Why PostgreSQL and not SQLite: FerretDB's SQLite backend never uses its
    _id index for an update, so every compare-and-set on an execution record
    scanned the whole collection (5 ms at 300 records, 70 ms at 3,000, and
    one writer at a time); on PostgreSQL it is about 1 ms and writers run in
    parallel (see tools/cmd/ferretdb/main.go). Its cluster is started and
    stopped with it.
    """

    name = "ferretdb"
    binary = "ferretdb"
    process_marker = "ferretdb"
    start_timeout = 60.0

    def __init__(self, lay: Layout, port: int) -> None:
        super().__init__(lay, port)
        self.storage = FerretStorage(lay, configured_port("ferretdb-pg"))

    def ensure_installed(self, report: Report) -> None:
        super().ensure_installed(report)
        self.storage.ensure_installed(report)

    def ensure(self, report: Report, timeout: float | None = None) -> None:
        """Its PostgreSQL first (idempotent), then FerretDB itself."""
        self.storage.ensure(report, timeout)
        super().ensure(report, timeout)

    def stop(self) -> bool:
        running = super().stop()
        self.storage.stop()
        return running

    def argv(self) -> list[str]:
        """Listen on loopback; collections live in our own PostgreSQL cluster."""
        return [
            str(self.executable),
            "-listen-addr",
            f"{HOST}:{self.port}",
            "-postgresql-url",
            self.storage.url(),
        ]

    def probe(self, timeout: float = 2.0) -> bool:
        """A MongoDB ``ping`` command, sent as an OP_MSG on the wire protocol.

        The message is framed by hand and its documents encoded with pymongo's
        own ``bson`` codec: importing the whole pymongo driver costs over half
        a second, which alone would break the budget of a warm ``up``.
        """
        import bson

        body = struct.pack("<I", 0) + b"\x00" + bson.encode({"ping": 1, "$db": "admin"})
        header = struct.pack("<iiii", 16 + len(body), 1, 0, _OP_MSG)
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(header + body)
                head = _recv_exactly(sock, 16)
                length, _, _, opcode = struct.unpack("<iiii", head)
                if opcode != _OP_MSG or not 21 < length < 1 << 24:
                    return False
                reply = _recv_exactly(sock, length - 16)
        except OSError:
            return False
        # flagBits (4 bytes), section kind 0 (1 byte), then the reply document.
        try:
            doc = bson.decode(reply[5:])
        except Exception:
            return False
        return bool(doc.get("ok"))


_OP_MSG = 2013


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        buf.extend(chunk)
    return bytes(buf)


class PubSub(_GoService):
    """Google's in-memory Pub/Sub fake (pstest) behind PUBSUB_EMULATOR_HOST."""

    name = "pubsub"
    binary = "pubsub-fake"
    process_marker = "pubsub-fake"

    def argv(self) -> list[str]:
        """Listen on loopback."""
        return [str(self.executable), "-host", HOST, "-port", str(self.port)]

    def probe(self, timeout: float = 2.0) -> bool:
        """TCP connect, then a real ``Publisher.ListTopics`` gRPC call.

        The request is the one-field ListTopicsRequest protobuf written by hand,
        sent through plain grpc: importing the full Pub/Sub client would cost a
        second on every ``up``.
        """
        if not port_open(HOST, self.port, timeout=timeout):
            return False
        import grpc

        project = f"projects/{PUBSUB_PROJECT_ID}".encode()
        request = b"\x0a" + _varint(len(project)) + project
        channel = grpc.insecure_channel(f"{HOST}:{self.port}")
        try:
            call = channel.unary_unary("/google.pubsub.v1.Publisher/ListTopics")
            call(request, timeout=timeout)
            return True
        except grpc.RpcError:
            return False
        finally:
            channel.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_CLASSES: dict[str, type[Service]] = {
    "postgres": Postgres,
    "redis": Redis,
    "ferretdb": FerretDB,
    "pubsub": PubSub,
}


# ---------------------------------------------------------------- public API


def _select(names: Iterable[str] | None) -> list[str]:
    if names is None:
        return list(SERVICE_NAMES)
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in _CLASSES]
    if unknown:
        raise DevstackError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}"
        )
    # Keep a stable order whatever order the caller gave.
    return [n for n in SERVICE_NAMES if n in chosen]


def get_service(name: str, lay: Layout | None = None) -> Service:
    """The service object for ``name`` on its configured port."""
    return _CLASSES[name](lay or layout(), configured_port(name))


def install_services(names: Iterable[str] | None = None, report: Report = _quiet) -> None:
    """Install the software for ``names`` (Debian packages, Go builds); start nothing."""
    chosen = _select(names)
    lay = layout()
    with file_lock(lay.lock_file):
        install.ensure_debian_packages(
            # FerretDB keeps its data in a PostgreSQL cluster of its own.
            postgres="postgres" in chosen or "ferretdb" in chosen,
            redis="redis" in chosen,
            report=report,
        )
        for name in chosen:
            cls = _CLASSES[name]
            if issubclass(cls, _GoService):
                install.ensure_binary(cls.binary, lay=lay, report=report)


def ensure_services(
    names: Iterable[str] | None = None,
    *,
    report: Report = _quiet,
    timeout: float | None = None,
) -> ServiceEnv:
    """Install, start and wait for the services; return where they listen.

    Idempotent and cheap when everything already runs: each running server is
    only asked whether it answers. Raises :class:`DevstackError` naming the
    service and its log when one cannot be brought up.
    """
    chosen = _select(names)
    lay = layout()
    with file_lock(lay.lock_file):
        for name in chosen:
            get_service(name, lay).ensure(report, timeout)
    return service_env()


def stop_services(names: Iterable[str] | None = None, *, report: Report = _quiet) -> list[str]:
    """Stop the services; return the names of those that were running."""
    chosen = _select(names)
    lay = layout()
    stopped: list[str] = []
    with file_lock(lay.lock_file):
        # Reverse order: dependants first, the database last.
        for name in reversed(chosen):
            svc = get_service(name, lay)
            if svc.stop():
                stopped.append(name)
                report(f"{name}: stopped")
            svc.port_file.unlink(missing_ok=True)
    return stopped


def services_status(
    names: Iterable[str] | None = None, *, probe: bool = True
) -> list[ServiceStatus]:
    """Status of each service (running, pid, port, log path).

    ``probe=False`` skips asking each server whether it answers, for callers
    that have just checked that themselves.
    """
    lay = layout()
    return [get_service(name, lay).status(probe=probe) for name in _select(names)]
