"""Warming every entry point against the real local services opens its connections.

``spreadpilot.local.functions_host`` calls this before serving; the first
request of each target then finds its clients built (the caches are filled).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import _lru_cache_wrapper
from pathlib import Path
from typing import Any

import pytest
from spreadpilot.config import get_settings
from spreadpilot.devstack import ServiceEnv
from spreadpilot.local import functions_host

import functions.runtime as runtime


def _cached_factories() -> list[_lru_cache_wrapper[Any]]:
    return [f for f in vars(runtime).values() if isinstance(f, _lru_cache_wrapper)]


@pytest.fixture
def fresh_runtime(
    devstack: ServiceEnv,
    mongo_db: Any,
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Date,Ticker,Strategy,Qty per leg,Strike Long,Strike Short\n")
    monkeypatch.setenv("SHEET_CSV_PATH", str(sheet))
    for key in ("SIM_START", "SIM_SPEED", "SIM_ANCHOR", "SECRETS_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MONGO_DB", mongo_db.name)
    monkeypatch.setenv("PNL_DATABASE_URL", pg_dsn)

    def clear() -> None:
        get_settings.cache_clear()
        for factory in _cached_factories():
            factory.cache_clear()

    clear()
    yield
    clear()


@pytest.mark.usefixtures("fresh_runtime")
def test_warm_up_builds_every_target_and_reuses_it() -> None:
    targets = sorted(runtime.TARGET_FACTORIES)
    assert functions_host.warm_up(targets) == {}
    for factory in (
        runtime.redis_client,
        runtime.mongo_db,
        runtime.postgres,
        runtime.signal_poller,
        runtime.signal_dispatcher,
        runtime.tv_monitor,
        runtime.alert_fanout,
        runtime.daily_rollup,
        runtime.monthly_rollup,
    ):
        assert factory.cache_info().currsize == 1, factory.__name__
    # What the first request gets is what was warmed (no second connection).
    mongo = runtime.mongo_db()
    assert runtime.warm_up(targets) == {}
    assert runtime.mongo_db() is mongo
    assert runtime.mongo_db.cache_info().currsize == 1


@pytest.mark.usefixtures("fresh_runtime")
def test_warm_up_reports_a_store_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNL_DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none")
    get_settings.cache_clear()
    failed = runtime.warm_up(["pnl_rollup_daily", "tv_monitor"])
    assert set(failed) == {"pnl_rollup_daily"}
    assert runtime.tv_monitor.cache_info().currsize == 1
