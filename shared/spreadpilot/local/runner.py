"""The local runner: Cloud Scheduler and Pub/Sub push, for functions on this machine.

In Google Cloud, Cloud Scheduler POSTs to each HTTP function on its cron, and
Eventarc turns each Pub/Sub message into a CloudEvent POSTed to the
subscribed function. Locally this runner does both, from the same
``schedule.yaml`` Terraform reads, against functions-framework servers (one
per target), so the code path is the production one: real HTTP into the
functions-framework entry points, real Pub/Sub (the fake) in between.

Time is the shared clock (``clock_from_env``): with the scaled clock of the
demo a simulated minute passes in a fraction of a second, and the runner
fires each minute's due jobs at that minute's simulated start.

Two compromises compressed time forces, both visible in the events:
- if the loop falls behind by more than a minute, a job due in several missed
  minutes fires once (for the latest), instead of a burst of stale runs;
- a job whose previous invocation is still running is not fired again
  (``overlap``). At real speed no scheduled job here outlasts its interval.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from spreadpilot.clock import Clock
from spreadpilot.domain.alerts import Alert
from spreadpilot.local.sinks import LocalAlertSink
from spreadpilot.schedule import Job, Schedule

log = logging.getLogger(__name__)

SINK_SUBSCRIPTION = "local-alert-sink"
PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
# Wall seconds an HTTP invocation may take beyond its (compressed) deadline:
# network and start-up latency do not shrink with simulated time.
WALL_SLACK_SECONDS = 30.0


@dataclass(frozen=True)
class RunnerEvent:
    """Something the runner did: a job fired, a message pushed, an error."""

    kind: str  # "job", "push", "alert", "overlap", "late", "error"
    name: str
    at: datetime  # simulated time
    ok: bool = True
    status: int | None = None
    wall_seconds: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)


EventListener = Callable[[RunnerEvent], None]


def subscription_id(job: Job) -> str:
    """The subscription feeding a topic-triggered job (one per job, like Eventarc)."""
    return f"{job.topic}-{job.name}"


def cloud_event_for(
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str],
    publish_time: datetime,
    project_id: str,
    topic: str,
    subscription: str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and body of the CloudEvent Eventarc delivers for one Pub/Sub message.

    Binary content mode: the ``ce-*`` headers carry the envelope, the JSON
    body is the Pub/Sub push payload (``message`` with base64 ``data``).
    """
    published = publish_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "ce-id": message_id,
        "ce-specversion": "1.0",
        "ce-type": PUBSUB_EVENT_TYPE,
        "ce-source": f"//pubsub.googleapis.com/projects/{project_id}/topics/{topic}",
        "ce-time": published,
        "content-type": "application/json",
    }
    body = {
        "message": {
            "data": base64.b64encode(data).decode("ascii"),
            "attributes": dict(attributes),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": f"projects/{project_id}/subscriptions/{subscription}",
    }
    return headers, body


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class LocalRunner:
    """Fires scheduled jobs and pushes Pub/Sub messages to functions-framework servers.

    ``endpoints`` maps a target name to its server's base URL. Jobs whose
    target has no endpoint are left out (``local up --only`` style runs).
    """

    def __init__(
        self,
        *,
        schedule: Schedule,
        clock: Clock,
        endpoints: Mapping[str, str],
        project_id: str,
        sink: LocalAlertSink | None = None,
        fresh_subscriptions: bool = False,
        max_workers: int = 16,
        enabled_jobs: Sequence[str] | None = None,
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self.endpoints = dict(endpoints)
        self.project_id = project_id
        self.sink = sink
        self.fresh = fresh_subscriptions
        self._enabled = set(enabled_jobs) if enabled_jobs is not None else None
        self._listeners: list[EventListener] = []
        self._stop = threading.Event()
        self._schedule_off = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="runner-job")
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pulls: list[Any] = []
        self._subscriber: Any = None
        self._http = httpx.Client(timeout=60.0)
        self._nacks: dict[str, int] = {}
        self.fired: dict[str, int] = {}
        self.failures: list[RunnerEvent] = []

    # -- events ------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: RunnerEvent) -> None:
        if not event.ok:
            self.failures.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the runner
                log.exception("runner listener failed")

    # -- jobs --------------------------------------------------------------------

    def _wanted(self, job: Job) -> bool:
        if job.target not in self.endpoints:
            return False
        return self._enabled is None or job.name in self._enabled or job.target in self._enabled

    @property
    def scheduled_jobs(self) -> list[Job]:
        return [j for j in self.schedule.scheduled if self._wanted(j)]

    @property
    def topic_jobs(self) -> list[Job]:
        return [j for j in self.schedule.topic_triggered if self._wanted(j)]

    def _wall(self, simulated_seconds: float) -> float:
        return self.clock.wall_seconds(simulated_seconds)

    def invoke(
        self, job: Job, body: Mapping[str, Any] | None = None, scheduled: datetime | None = None
    ) -> RunnerEvent:
        """POST to an HTTP job the way Cloud Scheduler does; blocks until it answers."""
        url = self.endpoints[job.target]
        moment = scheduled or self.clock.now()
        headers = {
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": job.name,
            "X-CloudScheduler-ScheduleTime": moment.astimezone(UTC).isoformat(),
        }
        deadline = job.attempt_deadline_seconds or 180
        started = time.monotonic()
        try:
            reply = self._http.post(
                url,
                json=dict(body or {}),
                headers=headers,
                timeout=self._wall(deadline) + WALL_SLACK_SECONDS,
            )
        except httpx.HTTPError as exc:
            return RunnerEvent(
                "job",
                job.name,
                self.clock.now(),
                ok=False,
                wall_seconds=time.monotonic() - started,
                detail={"error": f"{type(exc).__name__}: {exc}"},
            )
        detail: dict[str, Any]
        try:
            parsed = reply.json()
            detail = parsed if isinstance(parsed, dict) else {"body": parsed}
        except ValueError:
            detail = {"body": reply.text[:500]}
        return RunnerEvent(
            "job",
            job.name,
            self.clock.now(),
            ok=reply.is_success,
            status=reply.status_code,
            wall_seconds=time.monotonic() - started,
            detail=detail,
        )

    def _run_job(self, job: Job, minute: datetime) -> None:
        try:
            event = self.invoke(job, scheduled=minute)
        except Exception as exc:  # never lose the thread silently
            event = RunnerEvent(
                "job", job.name, self.clock.now(), ok=False, detail={"error": repr(exc)}
            )
        with self._lock:
            self.fired[job.name] = self.fired.get(job.name, 0) + 1
        self._emit(event)

    def fire(self, job: Job, minute: datetime) -> bool:
        """Start ``job`` for ``minute`` in the background; False if still running."""
        with self._lock:
            current = self._running.get(job.name)
            if current is not None and not current.done():
                overlap = True
            else:
                overlap = False
                self._running[job.name] = self._pool.submit(self._run_job, job, minute)
        if overlap:
            self._emit(RunnerEvent("overlap", job.name, self.clock.now()))
            return False
        return True

    def _schedule_loop(self) -> None:
        jobs = self.scheduled_jobs
        last = _floor_minute(self.clock.now())
        while not self._stop.is_set() and not self._schedule_off.is_set():
            now = self.clock.now()
            current = _floor_minute(now)
            if current > last:
                due: dict[str, tuple[Job, datetime]] = {}
                minute = last + timedelta(minutes=1)
                missed = 0
                while minute <= current:
                    for job in jobs:
                        if job.is_due(minute):
                            due[job.name] = (job, minute)
                    minute += timedelta(minutes=1)
                    missed += 1
                if missed > 2:
                    self._emit(RunnerEvent("late", "schedule", now, detail={"minutes": missed}))
                last = current
                for job, when in due.values():
                    self.fire(job, when)
            next_minute = current + timedelta(minutes=1)
            wait = self._wall((next_minute - self.clock.now()).total_seconds())
            self._stop.wait(min(max(wait, 0.001), 1.0))

    # -- Pub/Sub -----------------------------------------------------------------

    def _setup_pubsub(self) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        self._subscriber = subscriber
        wanted: list[tuple[str, str]] = [
            (j.topic or "", subscription_id(j)) for j in self.topic_jobs
        ]
        if self.sink is not None:
            wanted.append(("alerts", SINK_SUBSCRIPTION))
        topics = sorted({topic for topic, _ in wanted} | {"signals", "alerts"})
        if self.fresh:
            for _, sub in wanted:
                with contextlib.suppress(gexc.NotFound):
                    subscriber.delete_subscription(
                        request={"subscription": subscriber.subscription_path(self.project_id, sub)}
                    )
            for topic in topics:
                with contextlib.suppress(gexc.NotFound):
                    publisher.delete_topic(
                        request={"topic": publisher.topic_path(self.project_id, topic)}
                    )
        for topic in topics:
            with contextlib.suppress(gexc.AlreadyExists):
                publisher.create_topic(
                    request={"name": publisher.topic_path(self.project_id, topic)}
                )
        for topic, sub in wanted:
            with contextlib.suppress(gexc.AlreadyExists):
                subscriber.create_subscription(
                    request={
                        "name": subscriber.subscription_path(self.project_id, sub),
                        "topic": publisher.topic_path(self.project_id, topic),
                        "ack_deadline_seconds": 60,
                    }
                )
        with contextlib.suppress(Exception):
            publisher.stop()

    def _start_pulls(self) -> None:
        from google.cloud import pubsub_v1

        subscriber = self._subscriber
        flow = pubsub_v1.types.FlowControl(max_messages=64)
        for job in self.topic_jobs:
            path = subscriber.subscription_path(self.project_id, subscription_id(job))
            self._pulls.append(
                subscriber.subscribe(path, callback=self._pusher(job), flow_control=flow)
            )
        if self.sink is not None:
            path = subscriber.subscription_path(self.project_id, SINK_SUBSCRIPTION)
            self._pulls.append(
                subscriber.subscribe(path, callback=self._to_sink, flow_control=flow)
            )

    def _pusher(self, job: Job) -> Callable[[Any], None]:
        url = self.endpoints[job.target]
        sub = subscription_id(job)

        def push(message: Any) -> None:
            headers, body = cloud_event_for(
                message.message_id,
                message.data,
                dict(message.attributes),
                message.publish_time,
                self.project_id,
                job.topic or "",
                sub,
            )
            started = time.monotonic()
            try:
                reply = self._http.post(url, json=body, headers=headers, timeout=120.0)
                ok = reply.is_success
                status: int | None = reply.status_code
                error = None if ok else reply.text[:300]
            except httpx.HTTPError as exc:
                ok, status, error = False, None, f"{type(exc).__name__}: {exc}"
            event = RunnerEvent(
                "push",
                job.name,
                self.clock.now(),
                ok=ok,
                status=status,
                wall_seconds=time.monotonic() - started,
                detail={"message_id": message.message_id, **({"error": error} if error else {})},
            )
            self._emit(event)
            if ok:
                self._nacks.pop(message.message_id, None)
                message.ack()
                return
            # Pub/Sub would redeliver at once; back off a little so a function
            # that keeps failing does not spin a core.
            attempts = self._nacks.get(message.message_id, 0) + 1
            self._nacks[message.message_id] = attempts
            self._stop.wait(min(0.2 * 2**attempts, 5.0))
            message.nack()

        return push

    def _to_sink(self, message: Any) -> None:
        assert self.sink is not None
        try:
            alert = Alert.from_json(message.data)
        except ValueError as exc:
            log.warning("not an alert on the alerts topic: %s", exc)
            message.ack()
            return
        received = self.clock.now().isoformat()
        if self.sink.deliver(alert, received_at=received):
            self._emit(
                RunnerEvent(
                    "alert",
                    alert.type.value,
                    self.clock.now(),
                    detail={"follower_id": alert.follower_id, "severity": alert.severity.value},
                )
            )
        message.ack()

    # -- lifecycle ----------------------------------------------------------------

    def prepare(self) -> None:
        """Create topics and subscriptions (slow-ish: do it before the clock matters)."""
        if (self.topic_jobs or self.sink is not None) and self._subscriber is None:
            self._setup_pubsub()

    def start(self) -> None:
        """Start pulling and start the schedule (``prepare`` first if not done)."""
        self.prepare()
        if self._subscriber is not None:
            self._start_pulls()
        self._thread = threading.Thread(
            target=self._schedule_loop, name="runner-schedule", daemon=True
        )
        self._thread.start()

    def stop_schedule(self) -> None:
        """Fire no more scheduled jobs (Pub/Sub pushes continue until ``stop``)."""
        self._schedule_off.set()

    def stop(self) -> None:
        """Stop firing and pulling. In-flight invocations are abandoned, not awaited."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for pull in self._pulls:
            pull.cancel()
        for pull in self._pulls:
            with contextlib.suppress(Exception):
                pull.result(timeout=5)
        self._pulls.clear()
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                self._subscriber.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self._http.close()

    def busy(self) -> list[str]:
        """Jobs with an invocation still running."""
        with self._lock:
            return [name for name, fut in self._running.items() if not fut.done()]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no scheduled invocation is running (used before the report)."""
        deadline = time.monotonic() + timeout
        while self.busy():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True
