"""Prometheus metrics of the sidecar.

Each app gets its own registry so that several sidecars can live in one test
process without colliding on metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SidecarMetrics:
    """The figures an operator watches: orders, fills, rungs, latency, sessions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.orders_sent = Counter(
            "spreadpilot_orders_sent",
            "Orders sent to IB (new orders, not modifications)",
            ["follower_id", "kind"],
            registry=self.registry,
        )
        self.order_modifications = Counter(
            "spreadpilot_order_modifications",
            "Ladder moves of a working order (modified in place)",
            ["follower_id"],
            registry=self.registry,
        )
        self.fills = Counter(
            "spreadpilot_fills",
            "Executions received from IB",
            ["follower_id"],
            registry=self.registry,
        )
        self.rung_reached = Histogram(
            "spreadpilot_rung_reached",
            "Ladder rung at which an execution ended",
            ["follower_id"],
            buckets=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20),
            registry=self.registry,
        )
        self.signal_to_first_order = Histogram(
            "spreadpilot_signal_to_first_order_seconds",
            "Wall seconds from signal receipt to the first order sent",
            ["follower_id"],
            registry=self.registry,
        )
        self.executions_ended = Counter(
            "spreadpilot_executions_ended",
            "Executions that reached a final state",
            ["follower_id", "state"],
            registry=self.registry,
        )
        self.reconnects = Counter(
            "spreadpilot_reconnects",
            "Gateway reconnections",
            ["follower_id"],
            registry=self.registry,
        )
        self.session_up = Gauge(
            "spreadpilot_session_up",
            "1 when the follower's gateway session is connected and reconciled",
            ["follower_id"],
            registry=self.registry,
        )
        self.fills_buffered = Gauge(
            "spreadpilot_fills_buffered",
            "Fills waiting for PostgreSQL",
            registry=self.registry,
        )
