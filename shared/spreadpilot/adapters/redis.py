"""Redis clients with short timeouts and no hidden retries.

Why: Redis carries the alerts stream and the TV status, and it is written
from trading paths. A client that waits the library's defaults (and retries
three times) on a dead Redis would stall an order; callers here decide what to
do on failure (the alert publisher buffers), so the client fails fast.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from spreadpilot.config import redacted_url

__all__ = ["connect", "redacted_url"]


def connect(url: str, *, timeout: float = 0.5, client_name: str = "spreadpilot") -> Redis:
    """A client for ``url`` (``redis://[:password@]host:port/db``) that fails within ``timeout``.

    Responses are decoded to ``str``. No connection is made until first use.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        decode_responses=True,
        client_name=client_name,
        health_check_interval=30,
    )
