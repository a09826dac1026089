"""Fixtures that hand tests the real local services, isolated per test.

The servers (PostgreSQL, Redis, FerretDB, Google's Pub/Sub fake) are started
once per run through the same ``spreadpilot.devstack`` API the CLI uses, and
left running afterwards: the next run finds them up and pays nothing. Each test
then gets its own PostgreSQL database, MongoDB database, Redis key prefix and
Pub/Sub topic/subscription names, so tests never see each other's data, also
when several test runs share one stack.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from spreadpilot.devstack import ServiceEnv, ensure_services


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def devstack() -> Iterator[ServiceEnv]:
    """Bring every local service up once, and export its variables for the session.

    Code under test reads PNL_DATABASE_URL, REDIS_URL, MONGO_URI,
    PUBSUB_EMULATOR_HOST and PUBSUB_PROJECT_ID from the environment, exactly as
    in production; the variables are restored when the session ends.
    """
    env = ensure_services()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.environ().items():
            mp.setenv(key, value)
        yield env


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_dsn(devstack: ServiceEnv) -> Iterator[str]:
    """DSN of a brand-new, empty PostgreSQL database, dropped after the test."""
    import pg8000.native

    name = _unique("test")
    admin = pg8000.native.Connection(
        user="spreadpilot",
        password="spreadpilot",
        host="127.0.0.1",
        port=devstack.pg_port,
        database="spreadpilot",
    )
    try:
        admin.run(f'CREATE DATABASE "{name}"')
        yield devstack.pg_dsn(name)
    finally:
        # FORCE: a test that leaked a connection must not make teardown fail.
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# ---------------------------------------------------------------- MongoDB (FerretDB)


@pytest.fixture(scope="session")
def mongo_client(devstack: ServiceEnv) -> Iterator[Any]:
    """One pymongo client for the session (clients pool connections)."""
    import pymongo

    client: Any = pymongo.MongoClient(devstack.mongo_uri, serverSelectionTimeoutMS=10_000)
    yield client
    client.close()


@pytest.fixture
def mongo_db(mongo_client: Any) -> Iterator[Any]:
    """A fresh MongoDB database (``pymongo.database.Database``), dropped after."""
    name = _unique("test")
    yield mongo_client[name]
    mongo_client.drop_database(name)


# ---------------------------------------------------------------- Redis


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix owned by this test; every key under it is deleted after."""
    return f"{_unique('test')}:"


@pytest.fixture
def redis_key(redis_prefix: str) -> Callable[[str], str]:
    """``redis_key("alerts")`` -> ``"test_ab12...:alerts"``."""

    def key(name: str) -> str:
        return f"{redis_prefix}{name}"

    return key


@pytest.fixture
def redis_client(devstack: ServiceEnv, redis_prefix: str) -> Iterator[Any]:
    """A ``redis.Redis`` (bytes responses) on the local server.

    Use ``redis_key`` for key names: keys under the test's prefix are removed
    afterwards, anything else is left alone (other runs may share the server).
    """
    import redis

    client: Any = redis.Redis.from_url(devstack.redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# ---------------------------------------------------------------- Pub/Sub fake


@pytest.fixture(scope="session")
def pubsub_clients(devstack: ServiceEnv) -> Iterator[tuple[Any, Any]]:
    """(PublisherClient, SubscriberClient) talking to the fake via PUBSUB_EMULATOR_HOST."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()


@dataclass
class PubSubNames:
    """Unique topic and subscription for one test, plus clients to use them."""

    project_id: str
    topic_id: str
    subscription_id: str
    publisher: Any
    subscriber: Any

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project_id}/topics/{self.topic_id}"

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project_id}/subscriptions/{self.subscription_id}"

    def create(self, ack_deadline_seconds: int = 10) -> None:
        """Create the topic and a pull subscription on it."""
        self.publisher.create_topic(name=self.topic_path)
        self.subscriber.create_subscription(
            name=self.subscription_path,
            topic=self.topic_path,
            ack_deadline_seconds=ack_deadline_seconds,
        )


@pytest.fixture
def pubsub(devstack: ServiceEnv, pubsub_clients: tuple[Any, Any]) -> Iterator[PubSubNames]:
    """Unique topic/subscription names on the fake (not yet created: call ``create()``).

    Whatever exists under those names is deleted afterwards.
    """
    from google.api_core import exceptions

    publisher, subscriber = pubsub_clients
    names = PubSubNames(
        project_id=devstack.pubsub_project_id,
        topic_id=_unique("topic"),
        subscription_id=_unique("sub"),
        publisher=publisher,
        subscriber=subscriber,
    )
    yield names
    for delete, kwargs in (
        (subscriber.delete_subscription, {"subscription": names.subscription_path}),
        (publisher.delete_topic, {"topic": names.topic_path}),
    ):
        with contextlib.suppress(exceptions.NotFound):
            delete(request=kwargs)
