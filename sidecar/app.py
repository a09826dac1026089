"""The sidecar application: ``create_app(settings, deps)`` and its lifespan.

Everything stateful (sessions, executor, kill switch, sinks) lives in one
``Runtime`` object created at start-up and hung on ``app.state``; routers get
it through a dependency and only parse, call one use case, and format.
``SidecarDeps`` lets tests and the demo inject a clock, a database or an alert
publisher; production builds them all from ``Settings``.

Configuration is the one shared model (``spreadpilot.config.Settings``, the
``SIDECAR_*`` fields included). Its secrets (the API token, the MongoDB and
PostgreSQL URLs) are resolved once, in ``create_app``, through
``spreadpilot.secrets``: with ``SECRETS_BACKEND=gcp`` or ``vault`` they come
from Secret Manager or Vault, never from code of the sidecar's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.database import Database
from spreadpilot.adapters import mongo
from spreadpilot.adapters.ib_broker import FillRecord
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.clock import Clock, clock_from_env
from spreadpilot.config import Settings, get_settings
from spreadpilot.domain.followers import Follower
from spreadpilot.secrets import SecretName, settings_with_secrets
from spreadpilot.storage.fills import FillsRepository

from sidecar.alerts import AsyncAlerts, Publisher
from sidecar.auth import Authenticator, dependency, google_verifier
from sidecar.executor import Executor, ExecutorConfig
from sidecar.fills import FillSink
from sidecar.heap import settle_heap
from sidecar.liquidation import KillSwitch, Liquidator
from sidecar.logs import configure_logging
from sidecar.metrics import SidecarMetrics
from sidecar.reconciliation import Reconciler
from sidecar.session_pool import BrokerFactory, Session, SessionPool, default_broker_factory
from sidecar.store import ModeStore, StoreUnavailable
from sidecar.stores_impl import MongoExecutionStore, MongoFollowerSource, MongoModeStore

log = logging.getLogger(__name__)


@dataclass
class SidecarDeps:
    """What may be injected instead of built from settings."""

    clock: Clock | None = None
    publisher: Publisher | None = None
    db: Database[Any] | None = None
    broker_factory: BrokerFactory | None = None
    fills_repo_factory: Callable[[], FillsRepository] | None = None
    id_token_verifier: Callable[[str], dict[str, Any]] | None = None
    configure_logs: bool = True
    #: freeze the start-up heap and space out collections (``sidecar.heap``);
    #: for the sidecar process, not for an app built inside a test run
    settle_heap: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Runtime:
    """Every live component of one sidecar process."""

    def __init__(self, settings: Settings, deps: SidecarDeps) -> None:
        import os

        self.settings = settings
        self.clock: Clock = deps.clock or clock_from_env(dict(os.environ))
        self.metrics = SidecarMetrics()
        publisher = deps.publisher or _publisher_from_settings(settings)
        self.alerts = AsyncAlerts(publisher)
        self.publisher = publisher
        self._mongo_client: Any = None
        if deps.db is not None:
            self.db = deps.db
        else:
            self._mongo_client = mongo.connect(
                settings.mongo_uri, timeout_ms=settings.sidecar_mongo_timeout_ms, app_name="sidecar"
            )
            self.db = mongo.database(self._mongo_client, settings.mongo_db)
        self.store = MongoExecutionStore(self.db)
        self.follower_source = MongoFollowerSource(self.db)
        mode_store: ModeStore = MongoModeStore(self.db)
        self.killswitch = KillSwitch(lambda: mode_store)
        fills_factory = deps.fills_repo_factory or (
            lambda: FillsRepository(Postgres(settings.pnl_database_url, timeout=5.0))
        )
        self.fills = FillSink(fills_factory, self.metrics)
        self.pool = SessionPool(
            metrics=self.metrics,
            reconcile=self._reconcile,
            on_event=self._session_event,
            now=self.clock.now,
            broker_factory=deps.broker_factory
            or default_broker_factory(
                settings.sidecar_request_timeout_seconds, settings.sidecar_connect_timeout_seconds
            ),
            backoff_initial=settings.sidecar_reconnect_initial_seconds,
            backoff_max=settings.sidecar_reconnect_max_seconds,
            health_interval=settings.sidecar_health_interval_seconds,
            market_data_follower=settings.sidecar_market_data_follower,
        )
        self.executor = Executor(
            config=ExecutorConfig(
                min_price=settings.min_price,
                price_increment=settings.price_increment,
                max_attempts=settings.max_attempts,
                timeout_seconds=settings.timeout_seconds,
                ready_timeout=settings.sidecar_ready_timeout_seconds,
                reconnect_wait=settings.sidecar_reconnect_wait_seconds,
                max_age_seconds=settings.sidecar_execution_max_age_seconds,
            ),
            clock=self.clock,
            pool=self.pool,
            store=self.store,
            alerts=self.alerts,
            metrics=self.metrics,
            modes=self.killswitch,
        )
        self.reconciler = Reconciler(
            store=self.store,
            executor=self.executor,
            fills=self.fills,
            alerts=self.alerts,
            now=self.clock.now,
        )
        self.liquidator = Liquidator(
            pool=self.pool,
            killswitch=self.killswitch,
            alerts=self.alerts,
            metrics=self.metrics,
            now=self.clock.now,
            tv_critical=settings.tv_critical,
            tv_risk=settings.tv_risk,
            fill_wait=settings.sidecar_liquidation_fill_wait_seconds,
        )
        self.followers_error: str | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.alerts.start()
        self.fills.start()
        try:
            await asyncio.wait_for(self.store.ensure_indexes(), 10.0)
        except (StoreUnavailable, TimeoutError) as exc:
            log.error("execution indexes not ensured", extra={"error": str(exc)})
        await self.killswitch.load()
        await self.refresh_followers()
        self._refresh_task = asyncio.create_task(self._refresh_forever(), name="followers")

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        await self.executor.close()
        await self.pool.close()
        await self.fills.close()
        await self.alerts.close()
        if self._mongo_client is not None:
            self._mongo_client.close()

    async def refresh_followers(self) -> None:
        """Re-read followers; on failure keep the last known set (the kill switch needs it)."""
        try:
            followers: list[Follower] = await asyncio.wait_for(
                self.follower_source.list_all(), 10.0
            )
        except Exception as exc:
            self.followers_error = f"{type(exc).__name__}"
            log.warning("followers not refreshed", extra={"error": self.followers_error})
            return
        self.followers_error = None
        self.pool.sync_followers(followers)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sidecar_follower_refresh_seconds)
            await self.refresh_followers()

    # -- callbacks ------------------------------------------------------------------------

    async def _reconcile(self, session: Session) -> None:
        if not getattr(session, "_listeners", False):
            follower_id = session.follower_id

            def on_fill(fill: FillRecord) -> None:
                self.fills.add_fill(follower_id, fill)

            session.broker.add_fill_listener(on_fill)
            session.broker.add_commission_listener(self.fills.add_commission)
            session._listeners = True  # type: ignore[attr-defined]
        await self.reconciler(session)

    def _session_event(self, session: Session, event: str, detail: dict[str, Any]) -> None:
        from spreadpilot.domain.alerts import Alert, AlertType, Severity

        log.info(
            "session event",
            extra={"follower_id": session.follower_id, "event": event, **detail},
        )
        if event in ("disconnected", "unreachable", "wrong_account"):
            self.alerts.publish(
                Alert.create(
                    AlertType.GATEWAY_UNREACHABLE,
                    Severity.CRITICAL,
                    f"gateway session {event}: {session.last_error or event}",
                    {
                        "event": event,
                        "host": session.follower.gateway.host,
                        "port": session.follower.gateway.port,
                        "error_code": None,
                        "error_text": session.last_error,
                        **detail,
                    },
                    self.clock.now(),
                    follower_id=session.follower_id,
                )
            )


def _publisher_from_settings(settings: Settings) -> Publisher:
    from spreadpilot.alerting import AlertPublisher

    return AlertPublisher.from_settings(settings)


def resolve_secrets(settings: Settings) -> Settings:
    """``settings`` with the sidecar's secrets read from the configured secret source.

    The sidecar reads exactly these three (Terraform grants it exactly these):
    the API token, the MongoDB URI and the P&L database URL. With the ``env``
    backend this is a no-op. The token may be absent only when Google ID tokens
    are accepted instead (SIDECAR_ALLOWED_SERVICE_ACCOUNTS); otherwise a
    missing token is an error at start-up, not a sidecar that answers 401 to
    everyone. A secret source that cannot be read stops the start-up too:
    running with the environment's stand-in values instead would be worse.
    """
    optional = (SecretName.SIDECAR_TOKEN,) if settings.sidecar_service_accounts() else ()
    return settings_with_secrets(
        settings,
        SecretName.SIDECAR_TOKEN,
        SecretName.MONGO_URI,
        SecretName.PNL_DATABASE_URL,
        optional=optional,
    )


def create_app(settings: Settings | None = None, deps: SidecarDeps | None = None) -> FastAPI:
    """The sidecar app. Nothing connects until the lifespan starts.

    ``settings`` defaults to the process's ``get_settings()``; either way its
    secrets are resolved here, once, before anything uses them.
    """
    from sidecar.routers import executions, health, killswitch, metrics, positions, status, trade

    deps = deps or SidecarDeps()
    if deps.configure_logs:
        configure_logging()
    settings = resolve_secrets(settings if settings is not None else get_settings())

    token = settings.sidecar_token.get_secret_value() if settings.sidecar_token else None
    accounts = settings.sidecar_service_accounts()
    verifier = deps.id_token_verifier
    if verifier is None and accounts:
        verifier = google_verifier(settings.sidecar_auth_audience or settings.sidecar_url)
    if token is None and not accounts:
        log.warning("no SIDECAR_TOKEN and no service accounts: every protected route is 401")
    auth = dependency(Authenticator(token, service_accounts=accounts, verifier=verifier))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, deps)
        app.state.runtime = runtime
        await runtime.start()
        if deps.settle_heap:
            settle_heap()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="SpreadPilot broker sidecar",
        version="1.0.0",
        description="Per-follower IB sessions, ladder execution, liquidation, kill switch.",
        lifespan=lifespan,
        # The schema and the docs pages describe every route: served below behind
        # the same bearer dependency as the routes themselves, not openly.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422, content={"detail": "; ".join(problems) or "invalid request"}
        )

    @app.exception_handler(StoreUnavailable)
    async def _store_down(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"detail": f"execution store unavailable: {exc}"}
        )

    protected = [Depends(auth)]
    app.include_router(health.router)
    app.include_router(status.router, dependencies=protected)
    app.include_router(trade.router, dependencies=protected)
    app.include_router(executions.router, dependencies=protected)
    app.include_router(positions.router, dependencies=protected)
    app.include_router(killswitch.router, dependencies=protected)
    app.include_router(metrics.router, dependencies=protected)

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    async def _openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app
