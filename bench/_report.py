"""The one output shape every benchmark script prints, and how targets are judged.

Each ``bench/*.py`` script (files starting with ``_`` are helpers) measures
one thing and prints exactly ONE JSON object on stdout, and nothing else
there (progress goes to stderr), so ``python -m bench`` can collect them all:

    {
      "name": "signal_detection",            # the script's stem
      "title": "(e) signal detection latency",
      "description": "sheet row written -> Pub/Sub message published ...",
      "figures": [
        {"label": "p99", "value": 1.02, "unit": "s", "target": {"op": "<", "value": 1.5}},
        {"label": "p50", "value": 0.51, "unit": "s", "target": null}
      ],
      "details": {...}                        # anything else worth keeping
    }

A target is a comparison the figure must satisfy; the harness, not the
script, decides whether it is met, so every table uses one rule.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

OPERATORS = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class Target:
    """``value OP bound`` must hold, e.g. ``Target("<", 1.5)`` for "under 1.5"."""

    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"target operator must be one of {OPERATORS}, got {self.op!r}")

    def met_by(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return {
            "<": value < self.value,
            "<=": value <= self.value,
            ">": value > self.value,
            ">=": value >= self.value,
        }[self.op]

    def describe(self, unit: str = "") -> str:
        return f"{self.op} {_number(self.value)}{(' ' + unit) if unit else ''}"


@dataclass(frozen=True)
class Figure:
    """One measured number, its unit and (optionally) its target."""

    label: str
    value: float
    unit: str = ""
    target: Target | None = None


def target_from_json(raw: Any) -> Target | None:
    """A target from its JSON form (``null`` or ``{"op": "<", "value": 1.5}``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"target must be an object or null, got {raw!r}")
    return Target(str(raw.get("op")), float(raw["value"]))


def figure_from_json(raw: Any) -> Figure:
    """A figure from its JSON form; raises ValueError on anything malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"a figure must be an object, got {raw!r}")
    try:
        return Figure(
            label=str(raw["label"]),
            value=float(raw["value"]),
            unit=str(raw.get("unit", "")),
            target=target_from_json(raw.get("target")),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed figure {raw!r}: {exc}") from None


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a real sample)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/min/max/mean of a latency sample (for ``details``)."""
    return {
        "n": len(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "min": min(samples) if samples else math.nan,
        "max": max(samples) if samples else math.nan,
        "mean": statistics.fmean(samples) if samples else math.nan,
    }


def emit(
    name: str,
    title: str,
    description: str,
    figures: Sequence[Figure],
    details: dict[str, Any] | None = None,
) -> None:
    """Print the script's one JSON object on stdout."""
    payload = {
        "name": name,
        "title": title,
        "description": description,
        "figures": [
            {**asdict(f), "target": asdict(f.target) if f.target else None} for f in figures
        ],
        "details": details or {},
    }
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.3f}".rstrip("0").rstrip(".")
