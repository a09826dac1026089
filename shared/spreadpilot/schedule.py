"""The schedule table (``schedule.yaml``): which job runs when, and what it runs.

One data file feeds both the local runner and Terraform, so the two can never
disagree about cadence. This module loads and validates it (every job names a
target and exactly one trigger; cron expressions are well formed; the time zone
exists) and answers "which jobs are due at this minute" for the local runner.

Cron support is the standard five fields (minute hour day-of-month month
day-of-week) with ``*``, numbers, ``a-b`` ranges, ``/step`` and lists; it is the
subset Cloud Scheduler and Terraform accept and all this project uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DEFAULT_TIMEZONE = "America/New_York"
SCHEDULE_ENV = "SPREADPILOT_SCHEDULE"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_TARGET = re.compile(r"^[a-z_][a-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")

# (low, high) per cron field; day-of-week 7 is Sunday as well as 0.
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("dow", 0, 7))


class ScheduleError(ValueError):
    """The schedule table is malformed; the message names the job and field."""


@dataclass(frozen=True)
class CronExpr:
    """A parsed five-field cron expression."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        parts = text.split()
        if len(parts) != 5:
            raise ScheduleError(f"cron {text!r} must have 5 fields, has {len(parts)}")
        values = [
            _parse_field(part, name, low, high)
            for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(0 if d == 7 else d for d in values[4])
        return cls(
            text=text,
            minutes=values[0],
            hours=values[1],
            days=values[2],
            months=values[3],
            weekdays=weekdays,
            day_restricted=parts[2] != "*",
            weekday_restricted=parts[4] != "*",
        )

    def matches(self, local: datetime) -> bool:
        """True when the minute of ``local`` (already in the job's zone) is due.

        As in Vixie cron, when both day-of-month and day-of-week are restricted
        a day matching either is due.
        """
        if local.minute not in self.minutes or local.hour not in self.hours:
            return False
        if local.month not in self.months:
            return False
        weekday = (local.weekday() + 1) % 7  # Python Monday=0 -> cron Sunday=0
        day_ok = local.day in self.days
        weekday_ok = weekday in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _parse_field(part: str, name: str, low: int, high: int) -> frozenset[int]:
    result: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = low, high
            elif "-" in base:
                first_text, last_text = base.split("-", 1)
                first, last = int(first_text), int(last_text)
            else:
                first = int(base)
                last = high if step_text else first
        except ValueError:
            raise ScheduleError(f"cron {name} field {part!r} is not valid") from None
        if step < 1 or not (low <= first <= last <= high):
            raise ScheduleError(f"cron {name} field {part!r} is outside {low}-{high}")
        result.update(range(first, last + 1, step))
    return frozenset(result)


@dataclass(frozen=True)
class Job:
    """One row of the table: a target and its trigger (schedule xor topic)."""

    name: str
    target: str
    schedule: str | None
    topic: str | None
    timezone: str
    description: str
    attempt_deadline_seconds: int | None

    @property
    def cron(self) -> CronExpr | None:
        return CronExpr.parse(self.schedule) if self.schedule else None

    def is_due(self, moment: datetime) -> bool:
        """True when a scheduled job fires in the minute containing ``moment``."""
        cron = self.cron
        if cron is None:
            return False
        if moment.tzinfo is None:
            raise ValueError("is_due needs a timezone-aware datetime")
        return cron.matches(moment.astimezone(ZoneInfo(self.timezone)))


@dataclass(frozen=True)
class Schedule:
    """The whole table."""

    timezone: str
    jobs: tuple[Job, ...]

    def job(self, name: str) -> Job:
        """The job called ``name`` (its job name, or its target name)."""
        for job in self.jobs:
            if name in (job.name, job.target):
                return job
        known = ", ".join(j.name for j in self.jobs)
        raise KeyError(f"no job {name!r} in the schedule (known: {known})")

    @property
    def scheduled(self) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if j.schedule)

    @property
    def topic_triggered(self) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if j.topic)

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(j.target for j in self.jobs)

    def due(self, moment: datetime) -> list[Job]:
        """Scheduled jobs that fire in the minute containing ``moment``."""
        return [j for j in self.scheduled if j.is_due(moment)]


def default_path() -> Path:
    """``$SPREADPILOT_SCHEDULE``, else ``schedule.yaml`` at the repository root."""
    override = os.environ.get(SCHEDULE_ENV)
    if override:
        return Path(override)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "schedule.yaml"
        if candidate.is_file():
            return candidate
    return Path.cwd() / "schedule.yaml"


def load_schedule(path: str | Path | None = None) -> Schedule:
    """Read and validate the table; raises ScheduleError naming the problem."""
    source = Path(path) if path is not None else default_path()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScheduleError(f"schedule table {source} not found") from None
    except yaml.YAMLError as exc:
        raise ScheduleError(f"schedule table {source} is not valid YAML: {exc}") from None
    return parse_schedule(raw)


def parse_schedule(raw: Any) -> Schedule:
    """Validate an already-loaded table (a mapping with ``jobs``)."""
    if not isinstance(raw, dict):
        raise ScheduleError("schedule table must be a mapping with a 'jobs' list")
    unknown_top = set(raw) - {"timezone", "jobs"}
    if unknown_top:
        raise ScheduleError(f"unknown top-level key(s): {', '.join(sorted(unknown_top))}")
    timezone = str(raw.get("timezone") or DEFAULT_TIMEZONE)
    _check_zone(timezone, "schedule")
    entries = raw.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise ScheduleError("schedule table needs a non-empty 'jobs' list")
    jobs = [_parse_job(entry, index, timezone) for index, entry in enumerate(entries)]
    _check_unique(j.name for j in jobs)
    return Schedule(timezone=timezone, jobs=tuple(jobs))


_JOB_KEYS = frozenset(
    {"name", "target", "schedule", "topic", "timezone", "description", "attempt_deadline_seconds"}
)


def _parse_job(entry: Any, index: int, timezone: str) -> Job:
    if not isinstance(entry, dict):
        raise ScheduleError(f"job #{index + 1} must be a mapping")
    label = str(entry.get("name") or f"#{index + 1}")
    unknown = set(entry) - _JOB_KEYS
    if unknown:
        raise ScheduleError(f"job {label}: unknown key(s) {', '.join(sorted(unknown))}")
    name = str(entry.get("name") or "")
    if not _NAME.match(name):
        raise ScheduleError(f"job {label}: name must be lower-case letters, digits and '-'")
    target = str(entry.get("target") or "")
    if not _TARGET.match(target):
        raise ScheduleError(f"job {name}: target {target!r} is not a Python function name")
    schedule = entry.get("schedule")
    topic = entry.get("topic")
    if (schedule is None) == (topic is None):
        raise ScheduleError(f"job {name}: needs exactly one of 'schedule' or 'topic'")
    if schedule is not None:
        try:
            CronExpr.parse(str(schedule))
        except ScheduleError as exc:
            raise ScheduleError(f"job {name}: {exc}") from None
    if topic is not None and not _TOPIC.match(str(topic)):
        raise ScheduleError(f"job {name}: topic {topic!r} is not a valid Pub/Sub topic id")
    zone = str(entry.get("timezone") or timezone)
    _check_zone(zone, f"job {name}")
    deadline = entry.get("attempt_deadline_seconds")
    if deadline is not None and (not isinstance(deadline, int) or not 15 <= deadline <= 1800):
        raise ScheduleError(f"job {name}: attempt_deadline_seconds must be an integer 15..1800")
    return Job(
        name=name,
        target=target,
        schedule=str(schedule) if schedule is not None else None,
        topic=str(topic) if topic is not None else None,
        timezone=zone,
        description=str(entry.get("description") or ""),
        attempt_deadline_seconds=deadline,
    )


def _check_zone(zone: str, where: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{where}: unknown time zone {zone!r}") from None


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ScheduleError(f"job name {name!r} appears twice")
        seen.add(name)
