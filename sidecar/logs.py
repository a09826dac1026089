"""Structured JSON logs with a ``severity`` field.

Cloud Logging reads ``severity`` from a JSON line on stdout, so an operator can
filter the one CRITICAL line of a trading day out of thousands of INFO ones.
Secrets never reach this formatter: the auth layer does not log tokens, and
``Authorization`` headers are not part of any log record.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra record attributes become fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Route the root logger to stdout as JSON (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_spreadpilot_json", False):
            return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._spreadpilot_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # ib_async logs every message at INFO; keep its warnings and errors only.
    logging.getLogger("ib_async").setLevel(logging.WARNING)
