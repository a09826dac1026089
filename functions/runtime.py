"""Wiring: builds each job's use case from configuration, once per function instance.

Cloud Functions reuse an instance for many invocations, so connections
(Redis, MongoDB, PostgreSQL, Pub/Sub, HTTP clients) are made once here and
kept; the use cases themselves take plain dependencies and never read the
environment. Configuration is the one shared model (``spreadpilot.config.Settings``,
read once by ``get_settings()``); nothing here defines settings of its own.
Nothing here logs a secret: settings print redacted.

Secrets go through ``spreadpilot.secrets`` (``secret_settings``): with
``SECRETS_BACKEND=gcp`` or ``vault`` each factory asks, once per instance, for
exactly the secrets it uses, because each function's service account (or
Vault policy) is granted only those; asking for more would fail there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import gspread.utils
from spreadpilot.clock import Clock, clock_from_env
from spreadpilot.config import Settings, get_settings
from spreadpilot.domain.signals import Signal
from spreadpilot.secrets import (
    SecretName,
    SecretSource,
    backend_name,
    secret_source,
    settings_with_secrets,
)

SIGNALS_TOPIC = "signals"

log = logging.getLogger(__name__)


@cache
def _secret_source() -> SecretSource | None:
    """The configured secret source, one per instance (its cache then spans invocations)."""
    cfg = get_settings()
    return None if backend_name(cfg) == "env" else secret_source(cfg)


@cache
def secret_settings(*names: SecretName, optional: tuple[SecretName, ...] = ()) -> Settings:
    """``get_settings()`` with ``names`` read from the secret source, once per instance.

    With the ``env`` backend this is ``get_settings()`` itself. ``optional``
    names may be absent from the source (the feature they enable is then off,
    exactly as with an unset environment variable).
    """
    return settings_with_secrets(get_settings(), *names, source=_secret_source(), optional=optional)


@cache
def clock() -> Clock:
    """The wall clock, or the shared scaled clock when SIM_START is set (demo, tests)."""
    return clock_from_env(dict(os.environ))


@cache
def redis_client() -> Any:
    from spreadpilot.adapters.redis import connect

    return connect(get_settings().redis_url, timeout=2.0, client_name="spreadpilot-functions")


@cache
def mongo_db() -> Any:
    from spreadpilot.adapters.mongo import connect, database

    cfg = secret_settings(SecretName.MONGO_URI)
    return database(connect(cfg.mongo_uri, app_name="spreadpilot-functions"), cfg.mongo_db)


@cache
def postgres() -> Any:
    from spreadpilot.adapters.postgres import Postgres

    cfg = secret_settings(SecretName.PNL_DATABASE_URL)
    return Postgres(cfg.pnl_database_url, application_name="spreadpilot-functions")


@cache
def pubsub() -> Any:
    from spreadpilot.adapters.pubsub import PubSubPublisher

    return PubSubPublisher(get_settings().pubsub_project_id, timeout=10.0)


@cache
def alert_publisher() -> Any:
    from spreadpilot.alerting import AlertPublisher, PubSubSink, RedisStreamSink

    return AlertPublisher(
        [
            RedisStreamSink(redis_client(), maxlen=get_settings().alert_stream_maxlen),
            PubSubSink(pubsub(), timeout=5.0),
        ],
        retry_after=1.0,
    )


@cache
def followers() -> Any:
    from spreadpilot.storage.followers import FollowersRepository

    return FollowersRepository(mongo_db())


class PubSubSignalPublisher:
    """Pub/Sub ``signals``: the signal's JSON, its id as the ``signal_id`` attribute."""

    def __init__(self, publisher: Any, topic: str = SIGNALS_TOPIC) -> None:
        self._publisher = publisher
        self._topic = topic

    def publish_signal(self, signal: Signal, follower_id: str | None = None) -> str:
        attributes = {"signal_id": signal.signal_id, "source": signal.source}
        if follower_id:
            attributes["follower_id"] = follower_id
        return str(
            self._publisher.publish(self._topic, signal.to_json().encode("utf-8"), attributes)
        )


def spreadsheet_key(url_or_key: str) -> str:
    """GOOGLE_SHEET_URL may be the sheet's URL or just its key."""
    try:
        return str(gspread.utils.extract_id_from_url(url_or_key))
    except gspread.exceptions.NoValidUrlKeyFound:
        return url_or_key


@cache
def signal_poller() -> Any:
    from spreadpilot.adapters.sheets import sheet_source
    from spreadpilot.storage.signals import SignalsLedger

    from functions.signals import SignalPoller

    # Optional: a sheet shared with the function's service account needs no key.
    cfg = secret_settings(
        SecretName.GOOGLE_SHEETS_API_KEY, optional=(SecretName.GOOGLE_SHEETS_API_KEY,)
    )
    source = sheet_source(
        csv_path=cfg.sheet_csv_path,
        spreadsheet_key=spreadsheet_key(cfg.google_sheet_url) if cfg.google_sheet_url else None,
        worksheet=cfg.google_sheet_worksheet,
        api_key=cfg.google_sheets_api_key.get_secret_value() if cfg.google_sheets_api_key else None,
        base_url=cfg.sheets_api_base,
    )
    return SignalPoller(
        source=source,
        ledger=SignalsLedger(mongo_db()),
        published=redis_client(),
        publisher=PubSubSignalPublisher(pubsub()),
        alerts=alert_publisher(),
        clock=clock(),
        limits=cfg.signal_limits(),
        interval_seconds=cfg.polling_interval_seconds,
    )


@cache
def sidecar_for(url: str) -> Any:
    """One client per sidecar base URL (a follower record may name its shard)."""
    from spreadpilot.adapters.sidecar_client import SidecarClient, google_id_token, static_token

    if get_settings().sidecar_use_id_token:
        # Production: a Google-signed ID token whose audience is this sidecar.
        return SidecarClient(url, google_id_token(url))
    cfg = secret_settings(SecretName.SIDECAR_TOKEN)
    token = cfg.sidecar_token.get_secret_value() if cfg.sidecar_token else None
    return SidecarClient(url, static_token(token))


@cache
def signal_dispatcher() -> Any:
    from functions.dispatch import SignalDispatcher

    return SignalDispatcher(
        followers=followers(),
        sidecar_for=sidecar_for,
        default_sidecar_url=get_settings().sidecar_url,
        redis=redis_client(),
    )


class _FollowerChats:
    """A follower's own Telegram chat for their alerts (from the followers record)."""

    def __init__(self, repo: Any) -> None:
        self._repo = repo

    def telegram_chat_for(self, follower_id: str) -> str | None:
        follower = self._repo.get(follower_id)
        return follower.telegram_chat_id if follower is not None else None


@cache
def alert_fanout() -> Any:
    from spreadpilot.adapters.sendgrid import SendGridClient
    from spreadpilot.adapters.telegram import TelegramClient
    from spreadpilot.storage.alerts import AlertsRepository

    from functions.alerts import AlertFanout, RetryPolicy, Routing

    # Optional, as with env variables: a channel without its credential is off.
    channels = (SecretName.TELEGRAM_BOT_TOKEN, SecretName.SENDGRID_API_KEY)
    cfg = secret_settings(*channels, optional=channels)
    telegram = (
        TelegramClient(cfg.telegram_bot_token.get_secret_value(), base_url=cfg.telegram_api_base)
        if cfg.telegram_bot_token
        else None
    )
    mail = (
        SendGridClient(
            cfg.sendgrid_api_key.get_secret_value(),
            cfg.alert_from_email,
            base_url=cfg.sendgrid_api_base,
        )
        if cfg.sendgrid_api_key
        else None
    )
    return AlertFanout(
        redis=redis_client(),
        clock=clock(),
        delivery_log=AlertsRepository(mongo_db()),
        routing=Routing(cfg.alert_routing),
        retry=RetryPolicy(
            attempts=cfg.alert_max_attempts,
            base_delay=cfg.alert_retry_base_seconds,
            max_delay=cfg.alert_retry_max_seconds,
        ),
        telegram=telegram,
        admin_chat_id=cfg.telegram_admin_chat_id,
        mail=mail,
        admin_email=cfg.admin_email,
        follower_chats=_FollowerChats(followers()),
    )


@cache
def tv_monitor() -> Any:
    from functions.risk import Thresholds, TvMonitor

    cfg = get_settings()
    return TvMonitor(
        followers=followers(),
        sidecar_for=sidecar_for,
        default_sidecar_url=cfg.sidecar_url,
        redis=redis_client(),
        alerts=alert_publisher(),
        clock=clock(),
        thresholds=Thresholds(critical=cfg.tv_critical, risk=cfg.tv_risk),
        status_ttl_seconds=cfg.tv_status_ttl_seconds,
    )


@cache
def _fills() -> Any:
    from spreadpilot.storage.fills import FillsRepository

    return FillsRepository(postgres())


@cache
def _pnl() -> Any:
    from spreadpilot.storage.pnl import PnlRepository

    return PnlRepository(postgres())


def mark_to_market(marks_per_run: int, spacing_seconds: float) -> Any:
    from functions.pnl import MarkToMarket, SidecarMarks

    return MarkToMarket(
        followers=followers(),
        fills=_fills(),
        repo=_pnl(),
        marks=SidecarMarks(sidecar_for, get_settings().sidecar_url),
        clock=clock(),
        marks_per_run=marks_per_run,
        spacing_seconds=spacing_seconds,
    )


@cache
def daily_rollup() -> Any:
    from functions.pnl import DailyRollup

    return DailyRollup(fills=_fills(), repo=_pnl(), clock=clock())


@cache
def monthly_rollup() -> Any:
    from functions.pnl import MonthlyRollup

    return MonthlyRollup(
        followers=followers(), repo=_pnl(), clock=clock(), fx_rate=get_settings().commission_fx_rate
    )


def _mtm_connections() -> Any:
    """What ``pnl_mtm`` opens (the job object itself is built per request, with its cadence)."""
    settings = get_settings()
    return (followers(), _fills(), _pnl(), clock(), sidecar_for(settings.sidecar_url))


def _mongo_open() -> Any:
    """A round trip, so the connection is open (pymongo connects lazily)."""
    return mongo_db().command("ping")


def _postgres_open() -> Any:
    """A round trip, so the connection is open (the adapter connects lazily)."""
    return postgres().query("SELECT 1")


def _redis_open() -> Any:
    """A round trip, so the connection is open (redis-py connects lazily)."""
    return redis_client().ping()


#: The per-instance objects each entry point of ``functions/main.py`` builds on
#: its first call, in the order it builds them. A test keeps the keys equal to
#: the entry points, so a new function cannot be forgotten here.
TARGET_FACTORIES: dict[str, tuple[Callable[[], Any], ...]] = {
    "poll_signals": (signal_poller, alert_publisher, _mongo_open, _redis_open),
    "dispatch_signal": (signal_dispatcher, _mongo_open, _redis_open),
    "tv_monitor": (tv_monitor, alert_publisher, _mongo_open, _redis_open),
    "pnl_mtm": (_mtm_connections, _mongo_open, _postgres_open),
    "pnl_rollup_daily": (daily_rollup, _postgres_open),
    "pnl_rollup_monthly": (monthly_rollup, _mongo_open, _postgres_open),
    "alert_fanout": (alert_fanout, _mongo_open, _redis_open),
}


def warm_up(targets: Iterable[str]) -> dict[str, str]:
    """Build now what each of ``targets`` would build on its first invocation.

    Cloud Functions hides a cold start behind real time; on a scaled clock
    (the demo, ``spreadpilot local up``) a two-second cold start of
    ``poll_signals`` at 09:27 costs several simulated minutes of the signal
    window. Nothing is invoked: only the cached per-instance clients and use
    cases are made (connections opened, secrets read), exactly as the first
    request would, so that request finds them ready.

    Warming is an optimisation, never a condition to serve: a failure is
    logged and returned (``{target: reason}``, also for a name that is not an
    entry point), never raised; the first real request then tries again and
    reports the error where it belongs.
    """
    failed: dict[str, str] = {}
    for target in dict.fromkeys(targets):
        factories = TARGET_FACTORIES.get(target)
        if factories is None:
            failed[target] = "not an entry point of functions/main.py"
            continue
        for factory in factories:
            try:
                factory()
            except Exception as exc:
                failed[target] = f"{factory.__name__}: {type(exc).__name__}: {exc}"
                log.warning("warm-up of %s failed at %s: %s", target, factory.__name__, exc)
                break
    return failed
