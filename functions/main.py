"""Cloud Functions entry points (functions-framework targets).

Only parsing, one use-case call and formatting live here; each job's work is
in its own module (signals, dispatch, risk, pnl, alerts) and its wiring in
``functions.runtime``. The schedule table (``schedule.yaml``) names these
targets; a test fails if one it names is missing here.

HTTP targets answer 200 with a JSON report when the job ran (even if it found
problems it reported as alerts) and 500 only when it could not run, which is
what makes Cloud Scheduler retry. CloudEvent targets return normally to have
Pub/Sub acknowledge, and raise to have it redeliver.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from spreadpilot.config import get_settings

from functions import runtime

log = logging.getLogger("functions")


def _json_body(request: flask.Request) -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None


@functions_framework.http
def poll_signals(request: flask.Request) -> flask.Response:
    """Poll the signal sheet until this invocation's deadline (body: duration_seconds)."""
    try:
        seconds = _number(
            _json_body(request), "duration_seconds", get_settings().poll_duration_seconds
        )
    except ValueError as exc:
        return flask.make_response({"error": str(exc)}, 400)
    poller = runtime.signal_poller()
    try:
        report = poller.run_for(seconds)
    finally:
        runtime.alert_publisher().flush()
    return flask.make_response(report.as_dict(), 200)


@functions_framework.cloud_event
def dispatch_signal(cloud_event: CloudEvent) -> None:
    """Send a signal from Pub/Sub ``signals`` to every eligible follower's sidecar."""
    from functions.dispatch import BadMessage, decode_pubsub_signal

    try:
        message = decode_pubsub_signal(cloud_event.get_data() or {})
    except BadMessage as exc:
        # Acknowledge: redelivering a message that is not a signal cannot help.
        log.error("dropping signals message %s: %s", cloud_event.get("id"), exc)
        return
    report = runtime.signal_dispatcher().dispatch(message)
    log.info("dispatched %s", report.as_dict())


@functions_framework.http
def tv_monitor(request: flask.Request) -> flask.Response:
    """One time-value check of every follower's open spreads (body: force)."""
    force = bool(_json_body(request).get("force", False))
    monitor = runtime.tv_monitor()
    try:
        report = monitor.run(force=force)
    finally:
        runtime.alert_publisher().flush()
    return flask.make_response(report.as_dict(), 200)


@functions_framework.http
def pnl_mtm(request: flask.Request) -> flask.Response:
    """Two marks to market, 30 s apart (body: force, marks, spacing_seconds)."""
    body = _json_body(request)
    try:
        marks = int(_number(body, "marks", 2))
        spacing = _number(body, "spacing_seconds", get_settings().mtm_interval_seconds)
    except ValueError as exc:
        return flask.make_response({"error": str(exc)}, 400)
    job = runtime.mark_to_market(marks, spacing)
    report = job.run(force=bool(body.get("force", False)))
    return flask.make_response(report.as_dict(), 200)


@functions_framework.http
def pnl_rollup_daily(request: flask.Request) -> flask.Response:
    """Finalize every closed trading day not yet rolled up."""
    report = runtime.daily_rollup().run()
    return flask.make_response(report.as_dict(), 200)


@functions_framework.http
def pnl_rollup_monthly(request: flask.Request) -> flask.Response:
    """Roll up every complete month not yet rolled up, with commission statements."""
    report = runtime.monthly_rollup().run()
    return flask.make_response(report.as_dict(), 200)


@functions_framework.cloud_event
def alert_fanout(cloud_event: CloudEvent) -> None:
    """Send one alert from Pub/Sub ``alerts`` to its channels, once each."""
    from functions.alerts import BadAlertMessage, decode_pubsub_alert

    try:
        alert = decode_pubsub_alert(cloud_event.get_data())
    except BadAlertMessage as exc:
        # Acknowledge: redelivering something that is not an alert cannot help.
        log.error("dropping alerts message %s: %s", cloud_event.get("id"), exc)
        return
    result = runtime.alert_fanout().handle(alert)
    log.info("alert fan-out %s", result.as_dict())
