"""The schedule table (schedule.yaml) and the entry points in functions/main.py agree."""

from __future__ import annotations

import inspect
from datetime import datetime

import pytest

# Every functions-framework target registers itself in the framework's registry.
from functions_framework import _function_registry
from spreadpilot.clock import NEW_YORK
from spreadpilot.schedule import CronExpr, ScheduleError, load_schedule, parse_schedule

import functions.main as entry_points


def targets_in_main() -> set[str]:
    return {
        name
        for name, obj in vars(entry_points).items()
        if inspect.isfunction(obj)
        and obj.__module__ == entry_points.__name__
        and name in _function_registry.REGISTRY_MAP
    }


def test_every_job_names_an_existing_target() -> None:
    schedule = load_schedule()
    missing = sorted(schedule.targets - targets_in_main())
    assert missing == [], f"schedule.yaml names targets missing from functions/main.py: {missing}"


def test_every_target_is_scheduled_or_topic_triggered() -> None:
    schedule = load_schedule()
    orphans = sorted(targets_in_main() - schedule.targets)
    assert orphans == [], f"targets neither scheduled nor triggered by a topic: {orphans}"


def test_topic_targets_are_cloud_events_and_scheduled_ones_http() -> None:
    schedule = load_schedule()
    for job in schedule.jobs:
        kind = _function_registry.REGISTRY_MAP[job.target]
        assert kind == ("cloudevent" if job.topic else "http"), job.name
    assert {j.topic for j in schedule.topic_triggered} == {"signals", "alerts"}


def test_due_jobs_in_new_york_time() -> None:
    schedule = load_schedule()
    due = lambda *a: sorted(j.name for j in schedule.due(datetime(*a, tzinfo=NEW_YORK)))  # noqa: E731
    assert due(2025, 3, 11, 9, 27) == ["pnl-mtm", "poll-signals", "tv-monitor"]
    assert due(2025, 3, 11, 16, 30) == ["pnl-mtm", "pnl-rollup-daily", "tv-monitor"]
    assert due(2025, 4, 1, 0, 10) == ["pnl-rollup-monthly"]
    assert due(2025, 3, 15, 9, 27) == []  # Saturday


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"jobs": [{"name": "a", "target": "x"}]}, "exactly one"),
        ({"jobs": [{"name": "a", "target": "x", "schedule": "* *", "topic": None}]}, "5 fields"),
        ({"jobs": [{"name": "a", "target": "x", "schedule": "61 * * * *"}]}, "outside"),
        ({"jobs": [{"name": "a", "target": "x", "topic": "t1", "schedule": "* * * * *"}]}, "one"),
        ({"jobs": [{"name": "a", "target": "x-y", "topic": "alerts"}]}, "target"),
        ({"timezone": "Mars/Base", "jobs": [{"name": "a", "target": "x", "topic": "ab1"}]}, "zone"),
        ({"jobs": [{"name": "a", "target": "x", "topic": "aaa"}] * 2}, "twice"),
    ],
)
def test_malformed_tables_are_rejected(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(raw)


def test_cron_fields() -> None:
    cron = CronExpr.parse("*/15 9-16 * * 1-5")
    assert cron.minutes == frozenset({0, 15, 30, 45})
    assert cron.weekdays == frozenset({1, 2, 3, 4, 5})
    assert CronExpr.parse("0 0 * * 7").weekdays == frozenset({0})
