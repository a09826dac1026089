"""The whole system on this machine: services, ibsim, sidecar, functions, runner.

``local up`` and the demo both build a :class:`StackConfig` and call
:class:`LocalStack`. The pieces are the real ones, each in its own process
exactly as deployed: ibsim (one port per follower, one shared market), the
sidecar under uvicorn, one functions-framework server per target in
``schedule.yaml``, and the runner (in this process) standing in for Cloud
Scheduler and Pub/Sub push.

Every child gets the same environment (store URLs, the Pub/Sub project, the
sidecar token and, for simulated time, ``SIM_START``/``SIM_SPEED``/
``SIM_ANCHOR``), so they agree on where things are and what time it is.
Isolation (database names, a Redis database number, the Pub/Sub project) is
part of the config, so a demo and a test run never see each other's data.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from spreadpilot.devstack import PG_DATABASE, PG_PASSWORD, PG_USER, ServiceEnv
from spreadpilot.devstack.process import port_open
from spreadpilot.domain.alerts import Alert
from spreadpilot.domain.followers import Follower
from spreadpilot.local.runner import LocalRunner, RunnerEvent
from spreadpilot.local.sinks import LocalAlertSink
from spreadpilot.local.supervisor import Child, ComponentFailed, ProcessSpec, Supervisor
from spreadpilot.schedule import Schedule, load_schedule

LOOPBACK = "127.0.0.1"
# Secrets that make alerts leave this machine; the demo removes them.
REAL_ALERT_VARIABLES = ("TELEGRAM_BOT_TOKEN", "SENDGRID_API_KEY")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def venv_bin(name: str) -> str:
    """An executable next to this interpreter (the project's ``.venv/bin``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class StackConfig:
    """Everything that decides what runs where."""

    repo_root: Path
    log_dir: Path
    services: ServiceEnv
    followers: list[Follower]
    mongo_db: str = "spreadpilot"
    pg_database: str = PG_DATABASE
    redis_db: int = 0
    pubsub_project: str = "spreadpilot-local"
    sidecar_port: int = 8001
    sidecar_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: one functions-framework process per target (as deployed) instead of one host
    function_per_process: bool = False
    function_ports: dict[str, int] = field(default_factory=dict)
    functions_port: int = 0
    ibsim_control_port: int | None = None
    ibsim_seed: int = 0
    ibsim_scenario: Path | None = None
    ibsim_args: list[str] = field(default_factory=list)
    #: starting cash per account served by ibsim; others get ibsim's --equity
    ibsim_equity: dict[str, float] = field(default_factory=dict)
    clock_env: dict[str, str] = field(default_factory=dict)
    sheet_csv_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    strip_env: tuple[str, ...] = ()
    fresh: bool = False
    add_followers: bool = True
    schedule_path: Path | None = None
    console_alerts: bool = True

    @property
    def sidecar_url(self) -> str:
        return f"http://{LOOPBACK}:{self.sidecar_port}"

    @property
    def pnl_database_url(self) -> str:
        return self.services.pg_dsn(self.pg_database)

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.services.redis_port}/{self.redis_db}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://{LOOPBACK}:{self.services.mongo_port}/{self.mongo_db}"

    @property
    def alerts_path(self) -> Path:
        return self.log_dir / "alerts.jsonl"

    def environ(self) -> dict[str, str]:
        """The variables every child (and ``spreadpilot`` commands a person runs) needs."""
        env = {
            "PNL_DATABASE_URL": self.pnl_database_url,
            "REDIS_URL": self.redis_url,
            "MONGO_URI": self.mongo_uri,
            "MONGO_DB": self.mongo_db,
            "PUBSUB_EMULATOR_HOST": self.services.pubsub_emulator_host,
            "PUBSUB_PROJECT_ID": self.pubsub_project,
            "GOOGLE_CLOUD_PROJECT": self.pubsub_project,
            "SIDECAR_URL": self.sidecar_url,
            "SIDECAR_PORT": str(self.sidecar_port),
            "SIDECAR_HOST": LOOPBACK,
            "SIDECAR_TOKEN": self.sidecar_token,
            **self.clock_env,
        }
        if self.sheet_csv_path is not None:
            env["SHEET_CSV_PATH"] = str(self.sheet_csv_path)
        env.update(self.extra_env)
        return env


def ibsim_listen(followers: Sequence[Follower]) -> list[tuple[int, str]]:
    """(port, account) per follower whose gateway is on this machine, one per port."""
    seen: dict[int, str] = {}
    for follower in followers:
        host = follower.gateway.host
        if host not in (LOOPBACK, "localhost"):
            continue
        seen.setdefault(follower.gateway.port, follower.account)
    return sorted(seen.items())


def _listen_arg(port: int, account: str, equity: dict[str, float]) -> str:
    """ibsim's ``PORT=ACCOUNT[:EQUITY]``."""
    cash = equity.get(account)
    return f"{port}={account}" if cash is None else f"{port}={account}:{cash:.2f}"


Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class LocalStack:
    """Starts the stack in dependency order and stops it in reverse."""

    def __init__(self, config: StackConfig, report: Report = _quiet) -> None:
        self.config = config
        self.report = report
        self.supervisor = Supervisor(config.log_dir)
        self.schedule: Schedule = load_schedule(config.schedule_path)
        self.runner: LocalRunner | None = None
        self.sink: LocalAlertSink | None = None
        self.ibsim: Child | None = None
        self.sidecar: Child | None = None
        self.functions: dict[str, Child] = {}
        self.pgids: list[int] = []
        self._events_lock = threading.Lock()

    # -- data ---------------------------------------------------------------------

    def prepare_databases(self) -> None:
        """Create (or, when ``fresh``, recreate) the databases, schema and followers."""
        cfg = self.config
        self._prepare_postgres()
        self._prepare_mongo()
        if cfg.fresh:
            import redis

            client: Any = redis.Redis.from_url(cfg.redis_url)
            try:
                client.flushdb()
            finally:
                client.close()
        if cfg.fresh:
            cfg.alerts_path.unlink(missing_ok=True)
            (cfg.log_dir / "runner-events.jsonl").unlink(missing_ok=True)

    def _prepare_postgres(self) -> None:
        import pg8000.native

        from spreadpilot.adapters.postgres import Postgres
        from spreadpilot.storage.migrate import migrate

        cfg = self.config
        admin = pg8000.native.Connection(
            user=PG_USER,
            password=PG_PASSWORD,
            host=LOOPBACK,
            port=cfg.services.pg_port,
            database=PG_DATABASE,
        )
        try:
            if cfg.pg_database != PG_DATABASE:
                name = pg8000.native.identifier(cfg.pg_database)
                if cfg.fresh:
                    admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                exists = admin.run(
                    "SELECT 1 FROM pg_database WHERE datname = :n", n=cfg.pg_database
                )
                if not exists:
                    admin.run(f"CREATE DATABASE {name}")
        finally:
            admin.close()
        migrate(Postgres(cfg.pnl_database_url))

    def _prepare_mongo(self) -> None:
        from spreadpilot.adapters.mongo import connect, database
        from spreadpilot.storage.alerts import AlertsRepository
        from spreadpilot.storage.executions import ExecutionsRepository
        from spreadpilot.storage.followers import FollowersRepository
        from spreadpilot.storage.signals import SignalsLedger

        cfg = self.config
        client = connect(cfg.mongo_uri, timeout_ms=10_000)
        try:
            if cfg.fresh:
                client.drop_database(cfg.mongo_db)
            mdb = database(client, cfg.mongo_db)
            followers_repo = FollowersRepository(mdb)
            for repo in (
                followers_repo,
                ExecutionsRepository(mdb),
                SignalsLedger(mdb),
                AlertsRepository(mdb),
            ):
                repo.ensure_indexes()
            if cfg.add_followers:
                known = {f.id for f in followers_repo.list_all()}
                for follower in cfg.followers:
                    if follower.id not in known:
                        followers_repo.add(follower)
            cfg.followers = followers_repo.list_all()
        finally:
            client.close()

    # -- processes ----------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if k not in self.config.strip_env}
        env.update(self.config.environ())
        return env

    def ibsim_spec(self) -> ProcessSpec:
        cfg = self.config
        listen = ibsim_listen(cfg.followers)
        if not listen:
            raise ComponentFailed(
                "ibsim", "has no account to serve (no follower on 127.0.0.1)", cfg.log_dir
            )
        (first_port, first_account), *others = listen
        argv = [
            venv_bin("ibsim"),
            "--host",
            LOOPBACK,
            "--port",
            str(first_port),
            "--account",
            first_account,
            "--seed",
            str(cfg.ibsim_seed),
        ]
        for port, account in others:
            argv += ["--listen", _listen_arg(port, account, cfg.ibsim_equity)]
        if first_account in cfg.ibsim_equity:
            # Naming the primary account in --listen keeps its port and sets its cash.
            argv += ["--listen", _listen_arg(first_port, first_account, cfg.ibsim_equity)]
        if cfg.ibsim_scenario is not None:
            argv += ["--scenario", str(cfg.ibsim_scenario)]
        if cfg.ibsim_control_port is not None:
            argv += ["--control-port", str(cfg.ibsim_control_port)]
        argv += cfg.ibsim_args
        return ProcessSpec(
            "ibsim",
            argv,
            env=self._env(),
            cwd=cfg.repo_root,
            ready_line="IBSIM_READY",
            ready_timeout=30,
        )

    def sidecar_spec(self) -> ProcessSpec:
        cfg = self.config
        url = f"{cfg.sidecar_url}/health"

        def healthy() -> bool:
            return httpx.get(url, timeout=1.0).status_code == 200

        return ProcessSpec(
            "sidecar",
            [
                venv_bin("spreadpilot"),
                "sidecar",
                "--host",
                LOOPBACK,
                "--port",
                str(cfg.sidecar_port),
            ],
            env=self._env(),
            cwd=cfg.repo_root,
            ready_probe=healthy,
            ready_timeout=60,
        )

    def function_spec(self, target: str, port: int) -> ProcessSpec:
        """``functions-framework --target X``: one process per target, as deployed."""
        cfg = self.config
        return ProcessSpec(
            f"fn-{target}",
            [
                venv_bin("functions-framework"),
                "--target",
                target,
                "--source",
                str(cfg.repo_root / "functions" / "main.py"),
                "--host",
                LOOPBACK,
                "--port",
                str(port),
            ],
            env={**self._env(), "THREADS": "16"},
            cwd=cfg.repo_root,
            ready_probe=lambda: port_open(LOOPBACK, port, timeout=0.2),
            ready_timeout=90,
            # gunicorn: SIGINT is its quick shutdown (SIGTERM waits for requests).
            stop_signal=signal.SIGINT,
            stop_timeout=5,
        )

    def functions_host_spec(self, port: int) -> ProcessSpec:
        """Every target in one functions-framework server (see ``functions_host``)."""
        cfg = self.config
        argv = [
            sys.executable,
            "-m",
            "spreadpilot.local.functions_host",
            "--source",
            str(cfg.repo_root / "functions" / "main.py"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]
        for target in self.targets():
            argv += ["--target", target]
        url = f"http://{LOOPBACK}:{port}/"

        def listening() -> bool:
            return httpx.get(url, timeout=1.0).status_code == 200

        return ProcessSpec(
            "functions",
            argv,
            env={**self._env(), "THREADS": "32"},
            cwd=cfg.repo_root,
            ready_probe=listening,
            ready_timeout=90,
            stop_signal=signal.SIGINT,
            stop_timeout=5,
        )

    def targets(self) -> list[str]:
        return sorted(self.schedule.targets)

    def endpoints(self) -> dict[str, str]:
        """Where the runner reaches each target."""
        cfg = self.config
        if cfg.function_per_process:
            return {t: f"http://{LOOPBACK}:{p}/" for t, p in cfg.function_ports.items()}
        return {t: f"http://{LOOPBACK}:{cfg.functions_port}/{t}/" for t in self.targets()}

    def start_processes(self) -> None:
        """Functions first (slowest to import), ibsim, then the sidecar once ibsim listens."""
        cfg = self.config
        leftovers = self.supervisor.reap_leftovers()
        if leftovers:
            self.report(f"stopped {len(leftovers)} process group(s) left by an earlier run")
        starting: list[Child] = []
        if cfg.function_per_process:
            for target in self.targets():
                port = cfg.function_ports.setdefault(target, free_port())
                child = self._track(self.supervisor.start(self.function_spec(target, port)))
                self.functions[target] = child
                starting.append(child)
        else:
            if not cfg.functions_port:
                cfg.functions_port = free_port()
            host = self._track(self.supervisor.start(self.functions_host_spec(cfg.functions_port)))
            self.functions = {t: host for t in self.targets()}
            starting.append(host)
        self.ibsim = self._track(self.supervisor.start(self.ibsim_spec()))
        self.supervisor.wait_ready(self.ibsim)
        self.report(f"ibsim ready: {self.ibsim.ready_line()}")
        self.sidecar = self._track(self.supervisor.start(self.sidecar_spec()))
        self.supervisor.wait_all_ready([self.sidecar, *starting])
        self.report(f"sidecar ready on {cfg.sidecar_url}; functions ready")

    def _track(self, child: Child) -> Child:
        self.pgids.append(child.pid)
        return child

    def wait_sessions(self, timeout: float) -> dict[str, Any]:
        """Wait until the sidecar reports every follower's gateway session ready."""
        deadline = time.monotonic() + timeout
        sessions: dict[str, Any] = {}
        wanted = {f.id for f in self.config.followers if f.enabled}
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = httpx.get(f"{self.config.sidecar_url}/health", timeout=1.0).json()
                sessions = dict(body.get("sessions") or {})
                ready = {k for k, v in sessions.items() if v.get("ready")}
                if wanted <= ready:
                    return sessions
            time.sleep(0.1)
        return sessions

    def prepare_runner(self, *, fresh_subscriptions: bool = False) -> LocalRunner:
        """Build the runner and its Pub/Sub topics and subscriptions (no clock needed yet)."""
        import os

        from spreadpilot.clock import clock_from_env

        cfg = self.config
        if cfg.function_per_process:
            for target in self.targets():
                cfg.function_ports.setdefault(target, free_port())
        elif not cfg.functions_port:
            cfg.functions_port = free_port()
        console = sys.stdout if cfg.console_alerts else None
        self.sink = LocalAlertSink(cfg.alerts_path, console=console, console_filter=_for_people)
        # The runner itself talks to the Pub/Sub fake through the same variable.
        os.environ["PUBSUB_EMULATOR_HOST"] = cfg.services.pubsub_emulator_host
        self.runner = LocalRunner(
            schedule=self.schedule,
            clock=clock_from_env({**os.environ, **cfg.clock_env}),
            endpoints=self.endpoints(),
            project_id=cfg.pubsub_project,
            sink=self.sink,
            fresh_subscriptions=fresh_subscriptions,
        )
        self.runner.add_listener(self._log_event)
        self.runner.prepare()
        return self.runner

    def start_runner(self) -> LocalRunner:
        """Start firing jobs and pushing messages, on the configured clock."""
        import os

        from spreadpilot.clock import clock_from_env

        runner = self.runner or self.prepare_runner()
        # The clock may have been fixed after the runner was built.
        runner.clock = clock_from_env({**os.environ, **self.config.clock_env})
        runner.start()
        return runner

    def _log_event(self, event: RunnerEvent) -> None:
        """Every runner event, one JSON line, for diagnosing a slow or failed job."""
        import json

        line = {
            "kind": event.kind,
            "name": event.name,
            "at": event.at.isoformat(),
            "ok": event.ok,
            "status": event.status,
            "wall": round(event.wall_seconds, 4),
            "detail": event.detail,
        }
        with self._events_lock, (self.config.log_dir / "runner-events.jsonl").open("a") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    def failures(self) -> list[ComponentFailed]:
        return self.supervisor.failed()

    def stop(self) -> dict[str, int | None]:
        """Runner first (no new work), then every child, last started first."""
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        return self.supervisor.stop_all()


def _for_people(alert: Alert) -> bool:
    """Console filter: an unchanged TV status repeats every minute; keep it in the file only."""
    return not (
        alert.type.value in ("TV_SAFE", "TV_RISK", "TV_CRITICAL")
        and not alert.params.get("changed", True)
    )


def env_file_lines(env: Mapping[str, str]) -> list[str]:
    """``export`` lines for the variables a person needs next to a running stack."""
    import shlex

    return [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
