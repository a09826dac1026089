"""Throw-away names for a demo run (databases, Redis database, Pub/Sub project).

Like the e2e suite's ``names_factory``, so the demo the secret scan runs never
touches a developer's data or another test's; ``drop_names`` removes them.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from spreadpilot.devstack import PG_DATABASE, PG_PASSWORD, PG_USER, ServiceEnv

REDIS_DB = 4  # the demo uses 1, the e2e demo test 2, the `local up` test 3


def make_names(_services: ServiceEnv) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {"database": f"sec_{tag}", "project": f"sec-{tag}", "redis_db": REDIS_DB}


def drop_names(services: ServiceEnv, names: dict[str, Any]) -> None:
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
        admin.run(f'DROP DATABASE IF EXISTS "{names["database"]}" WITH (FORCE)')
        admin.close()
    with contextlib.suppress(Exception):
        client: Any = pymongo.MongoClient(services.mongo_uri, serverSelectionTimeoutMS=5000)
        client.drop_database(names["database"])
        client.close()
    with contextlib.suppress(Exception):
        r: Any = redis.Redis.from_url(
            f"redis://127.0.0.1:{services.redis_port}/{names['redis_db']}"
        )
        r.flushdb()
        r.close()
