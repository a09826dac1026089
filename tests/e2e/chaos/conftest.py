"""``chaos_stack(...)``: the assembled system for one chaos test (see ``chaos_harness``).

Names (databases, Redis database number, Pub/Sub project) come from the e2e
``names_factory`` and are dropped after the module; processes and proxies are
stopped after each test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from chaos_harness import (
    ADMIN_CHAT,
    ADMIN_EMAIL,
    BOT_TOKEN,
    ROUTING,
    SENDGRID_KEY,
    SPEED,
    TOKEN,
    ChaosFactory,
    ChaosStack,
    CuttableProxy,
    Pusher,
    free_port,
)
from fn_harness import FunctionServer
from sidecar_harness import LoopThread, Sim, make_clock
from spreadpilot.devstack import PG_DATABASE, PG_PASSWORD, PG_USER, ServiceEnv

# Redis database numbers the chaos tests take turns on (each flushed when a stack starts);
# the demo uses 1, the e2e tests 2-4, the benchmarks 13-14.
_REDIS_DBS = itertools.cycle(range(8, 13))


def _create_pg(services: ServiceEnv, name: str) -> None:
    import pg8000.native

    admin = pg8000.native.Connection(
        user=PG_USER,
        password=PG_PASSWORD,
        host="127.0.0.1",
        port=services.pg_port,
        database=PG_DATABASE,
    )
    try:
        admin.run(f"CREATE DATABASE {pg8000.native.identifier(name)}")
    finally:
        admin.close()


@pytest.fixture
def chaos_stack(
    services: ServiceEnv,
    names_factory: Callable[[int], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ChaosFactory]:
    import pymongo
    import redis
    from google.api_core import exceptions
    from google.cloud import pubsub_v1
    from spreadpilot.adapters.postgres import Postgres
    from spreadpilot.domain.followers import Follower, GatewayEndpoint
    from spreadpilot.standins import SendGridStandIn, TelegramStandIn
    from spreadpilot.storage.alerts import AlertsRepository
    from spreadpilot.storage.followers import FollowersRepository
    from spreadpilot.storage.migrate import migrate

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", services.pubsub_emulator_host)
    made: list[ChaosStack] = []
    cleanup: list[Callable[[], None]] = []

    def factory(
        followers: int = 3,
        *,
        twice_shuffled: bool = False,
        timeout_seconds: float = 20.0,
        max_open_spreads: int = 5,
        extra_env: dict[str, str] | None = None,
    ) -> ChaosStack:
        redis_db = next(_REDIS_DBS)
        names = names_factory(redis_db)
        accounts = {f"f{i + 1}": f"DU77{i + 1:05d}" for i in range(followers)}
        clock = make_clock(SPEED)
        sim = Sim(list(accounts.values()), clock)
        cleanup.append(sim.stop)

        _create_pg(services, names.database)
        pg_direct = services.pg_dsn(names.database)
        migrate(Postgres(pg_direct))
        mongo_client: Any = pymongo.MongoClient(services.mongo_uri, tz_aware=True)
        cleanup.append(mongo_client.close)
        mdb = mongo_client[names.database]
        repo = FollowersRepository(mdb)
        for i, (fid, account) in enumerate(accounts.items()):
            repo.add(
                Follower(
                    _id=fid,
                    name=fid,
                    gateway=GatewayEndpoint(
                        host="127.0.0.1", port=sim.ports[account], client_id=31 + i
                    ),
                    account=account,
                    max_open_spreads=max_open_spreads,
                )
            )
        AlertsRepository(mdb).ensure_indexes()
        direct_redis: Any = redis.Redis.from_url(
            f"redis://127.0.0.1:{services.redis_port}/{redis_db}"
        )
        direct_redis.flushdb()
        cleanup.append(direct_redis.close)

        lt = LoopThread("chaos-proxies")
        cleanup.append(lt.stop)
        proxies = {
            "redis": CuttableProxy(lt, services.redis_port),
            "mongo": CuttableProxy(lt, services.mongo_port),
            "postgres": CuttableProxy(lt, services.pg_port),
        }
        pg_port = urlsplit(pg_direct).port
        pg_proxied = pg_direct.replace(f":{pg_port}/", f":{proxies['postgres'].port}/")

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        cleanup.append(subscriber.close)
        subscriptions = {}
        for topic, target in (("alerts", "alert_fanout"), ("signals", "dispatch_signal")):
            topic_path = publisher.topic_path(names.project, topic)
            sub_path = subscriber.subscription_path(names.project, f"{topic}-{target}")
            with contextlib.suppress(exceptions.AlreadyExists):
                publisher.create_topic(name=topic_path)
            subscriber.create_subscription(name=sub_path, topic=topic_path, ack_deadline_seconds=10)
            subscriptions[topic] = sub_path

        telegram = TelegramStandIn(token=BOT_TOKEN).start()
        sendgrid = SendGridStandIn(api_key=SENDGRID_KEY).start()
        cleanup.extend([telegram.stop, sendgrid.stop])

        sidecar_port = free_port()
        common = {
            "MONGO_URI": f"mongodb://127.0.0.1:{proxies['mongo'].port}/",
            "MONGO_DB": names.database,
            "REDIS_URL": f"redis://127.0.0.1:{proxies['redis'].port}/{redis_db}",
            "PNL_DATABASE_URL": pg_proxied,
            "PUBSUB_EMULATOR_HOST": services.pubsub_emulator_host,
            "PUBSUB_PROJECT_ID": names.project,
            "GOOGLE_CLOUD_PROJECT": names.project,
            "SIDECAR_URL": f"http://127.0.0.1:{sidecar_port}",
            "SIDECAR_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
            **clock.to_env(),
        }
        sidecar_env = {
            **common,
            "TIMEOUT_SECONDS": str(timeout_seconds),
            "SIDECAR_HEALTH_INTERVAL_SECONDS": "0.5",
            "SIDECAR_RECONNECT_INITIAL_SECONDS": "0.2",
            "SIDECAR_RECONNECT_MAX_SECONDS": "1",
            "SIDECAR_CONNECT_TIMEOUT_SECONDS": "2",
            "SIDECAR_FOLLOWER_REFRESH_SECONDS": "1",
            "SIDECAR_MONGO_TIMEOUT_MS": "1500",
            "SIDECAR_RECONNECT_WAIT_SECONDS": "30",
            **(extra_env or {}),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
        fn_env = {
            **base,
            **common,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_ADMIN_CHAT_ID": ADMIN_CHAT,
            "TELEGRAM_API_BASE": telegram.base_url,
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "SENDGRID_API_BASE": sendgrid.base_url,
            "ADMIN_EMAIL": ADMIN_EMAIL,
            "ALERT_ROUTING": ROUTING,
            "ALERT_RETRY_BASE_SECONDS": "0.5",
            "ALERT_RETRY_MAX_SECONDS": "2",
        }
        functions = {
            "alerts": FunctionServer("alert_fanout", dict(fn_env)),
            "signals": FunctionServer("dispatch_signal", dict(fn_env)),
        }
        stack = ChaosStack(
            sim=sim,
            accounts=accounts,
            env=sidecar_env,
            sidecar_port=sidecar_port,
            proxies=proxies,
            mongo=mdb,
            redis=direct_redis,
            pg_dsn=pg_direct,
            telegram=telegram,
            sendgrid=sendgrid,
            functions=functions,
            publisher=publisher,
            project=names.project,
            log_dir=tmp_path,
        )
        made.append(stack)
        with ThreadPoolExecutor(3) as pool:
            started = [pool.submit(fn.start, tmp_path) for fn in functions.values()]
            stack.start_sidecar()
            for future in started:
                future.result()
        for topic, fn in functions.items():
            stack.pushers[topic] = Pusher(
                subscriber, subscriptions[topic], topic, fn, twice_shuffled=twice_shuffled
            ).start()
        return stack

    yield factory
    for stack in made:
        stack.stop()
    for step in reversed(cleanup):
        try:
            step()
        except Exception as exc:  # teardown must go on
            print(f"chaos teardown: {type(exc).__name__}: {exc}")
