"""Publishing to Google Pub/Sub (the emulator or fake locally, via PUBSUB_EMULATOR_HOST).

Why a wrapper: the client library retries a failed publish *forever* by
default and batches in background threads, so a caller that wants an answer
("was it published?") within a bounded time has to bound both the retry and
the wait. ``publish`` does that and returns the message id or raises
``PublishError``. Locally the emulator starts empty, so ``ensure_topic``
creates topics there (in production Terraform owns them and nothing is created).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_transient_error
from google.cloud.pubsub_v1 import PublisherClient

log = logging.getLogger(__name__)

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


class PublishError(RuntimeError):
    """The message was not confirmed published within the time allowed."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def emulator_host() -> str | None:
    """The emulator address the client library will use, if any."""
    return os.environ.get(EMULATOR_ENV) or None


class PubSubPublisher:
    """Bounded-time publishing to topics of one project.

    The underlying ``PublisherClient`` is created on first use, so building a
    publisher never fails (for example without credentials); the error shows
    up, as a ``PublishError``, when publishing.
    """

    def __init__(
        self,
        project_id: str,
        *,
        timeout: float = 10.0,
        create_topics: bool | None = None,
        client: PublisherClient | None = None,
    ) -> None:
        self.project_id = project_id
        self.timeout = timeout
        # Creating topics is for the emulator only, unless asked explicitly.
        self._create_topics = (
            emulator_host() is not None if create_topics is None else create_topics
        )
        self._client = client
        self._lock = threading.Lock()
        self._known_topics: set[str] = set()

    def _get_client(self) -> PublisherClient:
        with self._lock:
            if self._client is None:
                self._client = PublisherClient()
            return self._client

    def topic_path(self, topic: str) -> str:
        """``projects/{project}/topics/{topic}``."""
        return f"projects/{self.project_id}/topics/{topic}"

    def ensure_topic(self, topic: str, *, timeout: float | None = None) -> None:
        """Create ``topic`` if it does not exist (emulator only unless configured)."""
        path = self.topic_path(topic)
        if path in self._known_topics or not self._create_topics:
            return
        wait = self.timeout if timeout is None else timeout
        try:
            self._get_client().create_topic(request={"name": path}, timeout=wait, retry=None)
        except gexc.AlreadyExists:
            pass
        except Exception as exc:
            raise PublishError(f"cannot create topic {topic}: {type(exc).__name__}") from exc
        self._known_topics.add(path)

    def publish(
        self,
        topic: str,
        data: bytes,
        attributes: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Publish and wait for the server's acknowledgement; returns the message id.

        Raises ``PublishError`` if not confirmed within ``timeout`` seconds. A
        message that timed out may still arrive later (at-least-once), which
        is why every consumer de-duplicates by an id in the message.
        """
        ids = self._publish(topic, [(data, attributes)], timeout, stop_at_first_error=True)
        return ids[0]

    def publish_many(
        self,
        topic: str,
        messages: Sequence[tuple[bytes, Mapping[str, str] | None]],
        *,
        timeout: float | None = None,
    ) -> int:
        """Publish several messages in one batch; returns how many, counted from the
        first, were confirmed within ``timeout`` (raises only if none could be sent)."""
        return len(self._publish(topic, messages, timeout, stop_at_first_error=False))

    def _publish(
        self,
        topic: str,
        messages: Sequence[tuple[bytes, Mapping[str, str] | None]],
        timeout: float | None,
        *,
        stop_at_first_error: bool,
    ) -> list[str]:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        try:
            self.ensure_topic(topic, timeout=wait)
            client = self._get_client()
            retry = Retry(predicate=if_transient_error, initial=0.05, maximum=1.0, timeout=wait)
            futures = [
                client.publish(
                    self.topic_path(topic),
                    data,
                    retry=retry,
                    timeout=wait,
                    **{str(k): str(v) for k, v in (attrs or {}).items()},
                )
                for data, attrs in messages
            ]
        except PublishError:
            raise
        except Exception as exc:
            raise PublishError(f"publish to {topic} failed: {_describe(exc)}") from exc
        ids: list[str] = []
        for future in futures:
            try:
                ids.append(str(future.result(timeout=max(0.0, deadline - time.monotonic()))))
            except Exception as exc:
                if ids and not stop_at_first_error:
                    break
                if isinstance(exc, FutureTimeout):
                    raise PublishError(
                        f"publish to {topic} not confirmed within {wait:.1f} s"
                    ) from exc
                raise PublishError(f"publish to {topic} failed: {_describe(exc)}") from exc
        return ids

    def close(self) -> None:
        """Stop the client's background threads (pending messages are flushed)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.stop()
            except Exception:
                log.debug("pubsub client stop failed", exc_info=True)
