"""Local alert sinks: the console and a JSONL file.

On a laptop nobody has a Telegram bot or a SendGrid key, yet a person
watching ``local up`` (and the demo report) must see every alert. The runner
keeps its own subscription on the ``alerts`` topic and hands each alert here,
next to (not instead of) the ``alert_fanout`` function, which still delivers
to the real Telegram/SendGrid when their secrets are set.

Pub/Sub delivers at least once, so alerts are de-duplicated by ``id``, the
same key the fan-out uses. The file is append-only JSON Lines, one alert per
line with the simulated time it arrived, easy to ``tail -f`` or to load.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from spreadpilot.clock import NEW_YORK
from spreadpilot.domain.alerts import Alert

_COLOURS = {"CRITICAL": "\033[31m", "WARNING": "\033[33m", "INFO": "\033[36m"}
_RESET = "\033[0m"


class LocalAlertSink:
    """Writes each alert once to a JSONL file and (optionally) the console."""

    def __init__(
        self,
        path: Path,
        *,
        console: TextIO | None = None,
        console_filter: Callable[[Alert], bool] | None = None,
        colour: bool | None = None,
    ) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._console = console
        self._filter = console_filter
        stream = console if console is not None else sys.stdout
        self._colour = stream.isatty() if colour is None else colour
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Alert], None]] = []
        self.count = 0

    def add_listener(self, listener: Callable[[Alert], None]) -> None:
        """Called (in the delivering thread) for each new alert, e.g. progress counters."""
        self._listeners.append(listener)

    def deliver(self, alert: Alert, *, received_at: str | None = None) -> bool:
        """Record ``alert``; False when its id was already delivered."""
        with self._lock:
            if alert.id in self._seen:
                return False
            self._seen.add(alert.id)
            record: dict[str, Any] = json.loads(alert.model_dump_json())
            if received_at is not None:
                record["received_at"] = received_at
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")
            self.count += 1
            if self._console is not None and (self._filter is None or self._filter(alert)):
                self._console.write(self.format(alert) + "\n")
                self._console.flush()
        for listener in self._listeners:
            listener(alert)
        return True

    def format(self, alert: Alert) -> str:
        """One console line: New York time, severity, type, follower, message."""
        when = alert.created_at.astimezone(NEW_YORK).strftime("%H:%M:%S")
        who = f" [{alert.follower_id}]" if alert.follower_id else ""
        severity = alert.severity.value
        if self._colour:
            severity = f"{_COLOURS.get(severity, '')}{severity}{_RESET}"
        return f"alert {when} {severity} {alert.type.value}{who}: {alert.message}"


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """Every alert recorded in a sink file (missing file: none)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
