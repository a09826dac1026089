"""Harness: run Cloud Functions targets the way Cloud Functions does (functions-framework).

Each test starts ``functions-framework --target X`` as a subprocess on
127.0.0.1 (ephemeral port) with its own environment (its own MongoDB database,
PostgreSQL database and Pub/Sub project on the shared local services), and
talks to it with real HTTP requests and real CloudEvents.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[3]
FUNCTIONS_SOURCE = REPO / "functions" / "main.py"
FRAMEWORK = Path(sys.executable).parent / "functions-framework"
PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FunctionServer:
    """One functions-framework process serving one target."""

    target: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, log_dir: Path) -> FunctionServer:
        self.log_path = log_dir / f"{self.target}-{self.port}.log"
        handle = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(FRAMEWORK),
                "--target",
                self.target,
                "--source",
                str(FUNCTIONS_SOURCE),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=str(REPO),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited early:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.target} did not start:\n{self.logs()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def post(self, body: dict[str, Any] | None = None, timeout: float = 120) -> httpx.Response:
        return httpx.post(self.url, json=body or {}, timeout=timeout)

    def cloud_event(
        self,
        data: bytes,
        attributes: dict[str, str] | None = None,
        *,
        message_id: str | None = None,
        topic: str = "signals",
        timeout: float = 120,
    ) -> httpx.Response:
        """Deliver a Pub/Sub message as Eventarc does: a binary-mode CloudEvent."""
        message_id = message_id or uuid.uuid4().hex
        body = {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "attributes": attributes or {},
                "messageId": message_id,
                "publishTime": "2025-01-01T00:00:00Z",
            },
            "subscription": f"projects/p/subscriptions/{topic}-sub",
        }
        headers = {
            "ce-id": message_id,
            "ce-specversion": "1.0",
            "ce-source": f"//pubsub.googleapis.com/projects/p/topics/{topic}",
            "ce-type": PUBSUB_EVENT_TYPE,
            "ce-time": "2025-01-01T00:00:00Z",
            "content-type": "application/json",
        }
        return httpx.post(self.url, content=json.dumps(body), headers=headers, timeout=timeout)


@dataclass
class FunctionEnv:
    """The environment every function of one test shares (per-test stores)."""

    base: dict[str, str]
    mongo_db_name: str
    pg_dsn: str
    project_id: str
    log_dir: Path
    servers: list[FunctionServer] = field(default_factory=list)

    def start(self, target: str, **overrides: str) -> FunctionServer:
        env = dict(self.base)
        env.update(overrides)
        server = FunctionServer(target, env).start(self.log_dir)
        self.servers.append(server)
        return server

    def set(self, **values: str) -> None:
        self.base.update(values)


@contextlib.contextmanager
def function_env_for(
    devstack: Any, mongo_db: Any, pg_dsn: str, tmp_path: Path, prefix: str
) -> Iterator[FunctionEnv]:
    """A :class:`FunctionEnv` on this test's stores and a fresh Pub/Sub project
    (``<prefix>-<hex>``); stops every function server it started on exit."""
    project = f"{prefix}-{uuid.uuid4().hex[:10]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
    base.update(devstack.environ())
    base.update(
        {
            "MONGO_DB": mongo_db.name,
            "PNL_DATABASE_URL": pg_dsn,
            "PUBSUB_PROJECT_ID": project,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env = FunctionEnv(base, mongo_db.name, pg_dsn, project, tmp_path)
    yield env
    for server in env.servers:
        server.stop()


@dataclass
class Topic:
    """A topic and a pull subscription on the fake, in the test's project."""

    project_id: str
    topic_id: str
    publisher: Any
    subscriber: Any

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project_id}/topics/{self.topic_id}"

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project_id}/subscriptions/{self.topic_id}-test"

    def create(self) -> Topic:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.AlreadyExists):
            self.publisher.create_topic(name=self.topic_path)
        self.subscriber.create_subscription(
            name=self.subscription_path, topic=self.topic_path, ack_deadline_seconds=30
        )
        return self

    def pull(self, wait: float = 1.0) -> list[Any]:
        """Every message currently available (acknowledged), waiting up to ``wait``."""
        messages: list[Any] = []
        deadline = time.monotonic() + wait
        while True:
            response = self.subscriber.pull(
                request={"subscription": self.subscription_path, "max_messages": 100},
                timeout=5,
            )
            received = list(response.received_messages)
            if received:
                self.subscriber.acknowledge(
                    request={
                        "subscription": self.subscription_path,
                        "ack_ids": [m.ack_id for m in received],
                    }
                )
                messages.extend(m.message for m in received)
                continue
            if time.monotonic() >= deadline:
                return messages
            time.sleep(0.2)
