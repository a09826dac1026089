"""``functions.runtime.warm_up``: the public way to open a target's connections early.

The local functions host warms every target it serves before the first
request (a cold ``poll_signals`` at 09:27 on the demo's compressed clock costs
simulated minutes). What a target builds is the runtime's knowledge, so the
table lives there and must cover every entry point of functions/main.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from functions_framework import _function_registry
from spreadpilot.config import Settings, get_settings

import functions.main as entry_points
import functions.runtime as runtime


def targets_in_main() -> set[str]:
    """Entry points: functions of main.py registered with functions-framework."""
    return {
        name
        for name, obj in vars(entry_points).items()
        if inspect.isfunction(obj)
        and obj.__module__ == entry_points.__name__
        and name in _function_registry.REGISTRY_MAP
    }


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_every_entry_point_has_its_warm_up() -> None:
    assert set(runtime.TARGET_FACTORIES) == targets_in_main()


def test_unknown_target_is_reported_not_raised() -> None:
    assert runtime.warm_up(["no_such_function"]) == {
        "no_such_function": "not an entry point of functions/main.py"
    }
    assert runtime.warm_up([]) == {}


def test_a_failing_factory_is_reported_and_the_rest_still_warm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    def broken() -> None:
        raise ConnectionError("redis down")

    def fine() -> None:
        built.append("fine")

    monkeypatch.setitem(runtime.TARGET_FACTORIES, "tv_monitor", (broken, fine))
    monkeypatch.setitem(runtime.TARGET_FACTORIES, "pnl_rollup_daily", (fine,))
    failed = runtime.warm_up(["tv_monitor", "pnl_rollup_daily", "tv_monitor"])
    assert failed == {"tv_monitor": "broken: ConnectionError: redis down"}
    # The failed target stops at its first failure; the other target is warmed.
    assert built == ["fine"]
