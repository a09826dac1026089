"""poll_signals: read the sheet, accept today's signal once, publish it (SPEC section 2).

One invocation (Cloud Scheduler fires one a minute inside the signal window)
polls every POLLING_INTERVAL_SECONDS until its deadline. Each poll is one
sheet read, parsed by the domain parser. Then:

- a valid signal is offered to the ``signals`` ledger (unique per trading
  date). The first one of the date is published to Pub/Sub ``signals`` with its
  id as an attribute, once: a Redis marker set after the publish means a re-read
  of the same row publishes nothing, and a crash between accepting and
  publishing is repaired by the next poll (the ledger says DUPLICATE, the
  marker is missing, so it publishes);
- a row edited after its date's signal was accepted is SIGNAL_CHANGED (for a
  person to decide), never a second trade;
- an invalid row is SIGNAL_INVALID naming the row and the reason.

Alerts carry deterministic ids, so polling every second does not flood
people: the fan-out sends each id once. A 429 or 5xx from the Sheets API backs
off exponentially but never past the deadline, and polling resumes, so a burst
of throttling costs a few seconds of the window, not the window.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from spreadpilot.adapters.sheets import SheetReadError, SheetSource
from spreadpilot.clock import Clock, now_new_york
from spreadpilot.domain.alerts import Alert, AlertType
from spreadpilot.domain.signals import Signal, SignalError, SignalLimits, parse_sheet
from spreadpilot.storage.signals import RecordOutcome, RecordResult

log = logging.getLogger(__name__)

PUBLISHED_TTL_SECONDS = 7 * 24 * 3600


class SignalLedger(Protocol):
    """The MongoDB ``signals`` ledger: one accepted signal per trading date."""

    def record_first(self, signal: Signal, *, at: datetime) -> RecordResult: ...


class PublicationMarks(Protocol):
    """Which signal ids were already published (Redis ``SET NX`` markers)."""

    def exists(self, *names: str) -> int: ...

    def set(self, name: str, value: str, *, nx: bool = ..., ex: int | None = ...) -> object: ...


class SignalPublisher(Protocol):
    """Pub/Sub ``signals``: returns the message id once the server has it."""

    def publish_signal(self, signal: Signal) -> str: ...


class AlertSink(Protocol):
    def publish(self, alert: Alert) -> object: ...


@dataclass
class PollReport:
    """What one invocation did (the HTTP response body, and the tests' view)."""

    polls: int = 0
    read_failures: int = 0
    published: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    accepted_signal_id: str | None = None
    fatal: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "polls": self.polls,
            "read_failures": self.read_failures,
            "published": self.published,
            "changed": self.changed,
            "invalid": self.invalid,
            "accepted_signal_id": self.accepted_signal_id,
            "fatal": self.fatal,
        }


@dataclass
class SignalPoller:
    """The use case. Dependencies are passed in; nothing here reads the environment."""

    source: SheetSource
    ledger: SignalLedger
    published: PublicationMarks
    publisher: SignalPublisher
    alerts: AlertSink
    clock: Clock
    limits: SignalLimits = field(default_factory=SignalLimits)
    interval_seconds: float = 1.0
    max_backoff_seconds: float = 16.0
    _alerted: set[str] = field(default_factory=set, init=False, repr=False)

    def run(self, deadline: datetime) -> PollReport:
        """Poll until ``deadline`` (clock time). Always polls at least once."""
        report = PollReport()
        backoff = 0.0
        while True:
            started = self.clock.now()
            report.polls += 1
            try:
                rows = self.source.read_rows()
            except SheetReadError as exc:
                report.read_failures += 1
                if not exc.transient:
                    report.fatal = str(exc)
                    self._alert_unreadable(str(exc))
                    return report
                backoff = min(self.max_backoff_seconds, max(self.interval_seconds * 2, backoff * 2))
                log.warning("sheet read failed (%s); backing off %.1fs", exc, backoff)
                if not self._sleep_until_next(deadline, started, backoff):
                    return report
                continue
            backoff = 0.0
            self._handle_rows(rows, report)
            if not self._sleep_until_next(deadline, started, self.interval_seconds):
                return report

    def run_for(self, seconds: float) -> PollReport:
        """Poll for ``seconds`` of clock time from now (one scheduled invocation)."""
        return self.run(self.clock.now() + timedelta(seconds=seconds))

    def poll_once(self) -> PollReport:
        """One read and its consequences (for manual runs)."""
        return self.run(self.clock.now())

    def _sleep_until_next(self, deadline: datetime, started: datetime, wait: float) -> bool:
        """Sleep so polls start ``wait`` apart; False when the deadline leaves no room."""
        now = self.clock.now()
        next_start = started.timestamp() + wait
        if next_start >= deadline.timestamp():
            return False
        pause = next_start - now.timestamp()
        if pause > 0:
            self.clock.sleep_blocking(pause)
        return True

    def _handle_rows(self, rows: list[list[str]], report: PollReport) -> None:
        today = now_new_york(self.clock).date()
        parsed = parse_sheet(rows, today, self.limits)
        for error in parsed.errors:
            self._alert_invalid(error, today.isoformat(), report)
        signal = parsed.signal
        if signal is None:
            return
        result = self.ledger.record_first(signal, at=self.clock.now())
        if result.outcome is RecordOutcome.CHANGED:
            self._alert_changed(signal, result.recorded, report)
            return
        report.accepted_signal_id = signal.signal_id
        marker = f"signal:published:{signal.signal_id}"
        if self.published.exists(marker):
            return
        # ACCEPTED now, or a DUPLICATE of one accepted but never published (a
        # crash between the two steps): publish now. Were the marker ever lost,
        # a second message is harmless: dispatch executes a signal at most once
        # per follower.
        message_id = self.publisher.publish_signal(signal)
        self.published.set(marker, message_id, nx=True, ex=PUBLISHED_TTL_SECONDS)
        report.published.append(signal.signal_id)
        log.info("published signal %s (message %s)", signal.signal_id, message_id)

    def _publish_alert(self, alert: Alert) -> None:
        if alert.id in self._alerted:
            return
        self.alerts.publish(alert)
        self._alerted.add(alert.id)

    def _alert_invalid(self, error: SignalError, day: str, report: PollReport) -> None:
        where = f"row {error.row_number}" if error.row_number is not None else "sheet"
        digest = hashlib.sha256(f"{day}|{where}|{error.reason}".encode()).hexdigest()[:16]
        if f"{where}: {error.reason}" not in report.invalid:
            report.invalid.append(f"{where}: {error.reason}")
        self._publish_alert(
            Alert.create(
                AlertType.SIGNAL_INVALID,
                None,
                f"Signal sheet {where} for {day} is invalid: {error.reason}. Nothing traded.",
                {
                    "row": error.row_number,
                    "reason": error.reason,
                    "cells": [str(c) for c in error.raw],
                    "trading_date": day,
                },
                self.clock.now(),
                id=f"signal-invalid-{day}-{digest}",
            )
        )

    def _alert_changed(self, signal: Signal, recorded: Signal, report: PollReport) -> None:
        if signal.signal_id not in report.changed:
            report.changed.append(signal.signal_id)
        self._publish_alert(
            Alert.create(
                AlertType.SIGNAL_CHANGED,
                None,
                f"The signal row for {signal.trading_date.isoformat()} changed after the day's "
                "signal was accepted. It was NOT traded again; decide manually.",
                {
                    "trading_date": signal.trading_date.isoformat(),
                    "traded_signal_id": recorded.signal_id,
                    "new_signal_id": signal.signal_id,
                    "strategy": signal.strategy.value,
                    "strike_long": signal.strike_long,
                    "strike_short": signal.strike_short,
                    "qty_per_leg": signal.qty_per_leg,
                    "row": signal.row_number,
                },
                self.clock.now(),
                id=f"signal-changed-{signal.signal_id}",
            )
        )

    def _alert_unreadable(self, reason: str) -> None:
        day = now_new_york(self.clock).date().isoformat()
        self._publish_alert(
            Alert.create(
                AlertType.COMPONENT_DOWN,
                None,
                f"The signal sheet cannot be read: {reason}. No signal will be taken.",
                {"component": "signal_sheet", "reason": reason},
                self.clock.now(),
                id=f"sheet-unreadable-{day}-{hashlib.sha256(reason.encode()).hexdigest()[:12]}",
            )
        )
