"""Fixtures for the whole-stack tests: the local services and throw-away names.

Each test gets database names, a Pub/Sub project and a Redis database number
of its own, so an e2e run never reads (or wipes) a developer's demo or
``local up`` data, and the names are dropped afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from spreadpilot.devstack import PG_DATABASE, PG_PASSWORD, PG_USER, ServiceEnv, ensure_services


@pytest.fixture(scope="session")
def services() -> ServiceEnv:
    return ensure_services()


@dataclass(frozen=True)
class Names:
    database: str  # PostgreSQL and MongoDB database
    project: str  # Pub/Sub project
    redis_db: int


def _drop(services: ServiceEnv, names: Names) -> None:
    import pg8000.native
    import pymongo
    import redis

    with contextlib.suppress(Exception):
        admin = pg8000.native.Connection(
            user=PG_USER,
            password=PG_PASSWORD,
            host="127.0.0.1",
            port=services.pg_port,
            database=PG_DATABASE,
        )
        admin.run(f'DROP DATABASE IF EXISTS "{names.database}" WITH (FORCE)')
        admin.close()
    with contextlib.suppress(Exception):
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            services.mongo_uri, serverSelectionTimeoutMS=5000
        )
        client.drop_database(names.database)
        client.close()
    with contextlib.suppress(Exception):
        r = redis.Redis.from_url(f"redis://127.0.0.1:{services.redis_port}/{names.redis_db}")
        r.flushdb()
        r.close()


NamesFactory = Callable[[int], Names]


@pytest.fixture(scope="module")
def names_factory(services: ServiceEnv) -> Iterator[NamesFactory]:
    """Fresh names; whatever was created under them is dropped after the module."""
    made: list[Names] = []

    def make(redis_db: int) -> Names:
        tag = uuid.uuid4().hex[:10]
        names = Names(database=f"e2e_{tag}", project=f"e2e-{tag}", redis_db=redis_db)
        made.append(names)
        return names

    yield make
    for names in made:
        _drop(services, names)
