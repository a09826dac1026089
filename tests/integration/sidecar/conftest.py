"""Fixtures for the sidecar's integration tests: a stack per test.

``make_stack`` starts ibsim (one port per follower account), registers the
followers in a fresh MongoDB database, migrates a fresh PostgreSQL database,
and runs the sidecar in-process under uvicorn with alerts going to a
per-test Redis stream and Pub/Sub topic. Everything is torn down after.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sidecar_harness import (
    TOKEN,
    FollowerSpec,
    LoopThread,
    Person,
    SidecarServer,
    Sim,
    Stack,
    TcpProxy,
    free_port,
    make_clock,
    wait_sessions_ready,
)
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.adapters.pubsub import PubSubPublisher
from spreadpilot.adapters.redis import connect as redis_connect
from spreadpilot.alerting import AlertPublisher, PubSubSink, RedisStreamSink
from spreadpilot.config import Settings
from spreadpilot.domain.followers import Follower, GatewayEndpoint
from spreadpilot.storage.fills import FillsRepository
from spreadpilot.storage.followers import FollowersRepository
from spreadpilot.storage.migrate import migrate

from sidecar.app import SidecarDeps, create_app

pytestmark = pytest.mark.integration


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    devstack: Any, mongo_db: Any, pg_dsn: str, redis_key: Callable[[str], str], pubsub: Any
) -> Iterator[StackFactory]:
    created: list[Stack] = []
    proxy_loop: list[LoopThread] = []

    def factory(
        followers: list[FollowerSpec],
        *,
        seed: int = 7,
        settings: dict[str, Any] | None = None,
        speed: float = 20.0,
        proxies: bool = False,
    ) -> Stack:
        clock = make_clock(speed)
        equity = {f.account: f.equity for f in followers if f.equity is not None}
        sim = Sim([f.account for f in followers if not f.down], clock, seed=seed, equity=equity)
        repo = FollowersRepository(mongo_db)
        for i, f in enumerate(followers):
            port = free_port() if f.down else sim.ports[f.account]
            repo.add(
                Follower(
                    _id=f.id,
                    name=f.id,
                    gateway=GatewayEndpoint(host="127.0.0.1", port=port, client_id=f.client_id + i),
                    account=f.account,
                    qty_multiplier=f.qty_multiplier,
                    max_qty_per_leg=f.max_qty_per_leg,
                    max_open_spreads=f.max_open_spreads,
                )
            )
        migrate(Postgres(pg_dsn))
        mongo_uri = devstack.mongo_uri
        redis_url = devstack.redis_url
        dsn = pg_dsn
        proxy_map: dict[str, TcpProxy] = {}
        db = mongo_db
        if proxies:
            if not proxy_loop:
                proxy_loop.append(LoopThread("proxies"))
            lt = proxy_loop[0]
            from urllib.parse import urlsplit

            m = urlsplit(mongo_uri)
            r = urlsplit(redis_url)
            p = urlsplit(pg_dsn)
            proxy_map = {
                "mongo": TcpProxy(lt, m.hostname or "127.0.0.1", m.port or 27017),
                "redis": TcpProxy(lt, r.hostname or "127.0.0.1", r.port or 6379),
                "postgres": TcpProxy(lt, p.hostname or "127.0.0.1", p.port or 5432),
            }
            mongo_uri = f"mongodb://127.0.0.1:{proxy_map['mongo'].port}/"
            redis_url = f"redis://127.0.0.1:{proxy_map['redis'].port}/0"
            dsn = pg_dsn.replace(f":{p.port}/", f":{proxy_map['postgres'].port}/")
            db = None
        merged = {
            "mongo_uri": mongo_uri,
            "mongo_db": mongo_db.name,
            "redis_url": redis_url,
            "pnl_database_url": dsn,
            "sidecar_token": TOKEN,
            "timeout_seconds": 20.0,
            # The sidecar's patience, shortened for tests (production defaults are longer).
            "sidecar_follower_refresh_seconds": 1.0,
            "sidecar_reconnect_initial_seconds": 0.2,
            "sidecar_reconnect_max_seconds": 1.0,
            "sidecar_health_interval_seconds": 0.5,
            "sidecar_ready_timeout_seconds": 2.0,
            "sidecar_reconnect_wait_seconds": 20.0,
            "sidecar_request_timeout_seconds": 5.0,
            "sidecar_connect_timeout_seconds": 2.0,
            "sidecar_liquidation_fill_wait_seconds": 10.0,
            "sidecar_mongo_timeout_ms": 1500,
            **(settings or {}),
        }
        cfg = Settings(**merged)
        alerts_key = redis_key(f"alerts-{uuid.uuid4().hex[:6]}")
        if not created:
            pubsub.create()
        publisher = AlertPublisher(
            [
                RedisStreamSink(redis_connect(redis_url, timeout=0.5), stream=alerts_key),
                PubSubSink(PubSubPublisher(pubsub.project_id, timeout=2.0), topic=pubsub.topic_id),
            ],
            retry_after=0.5,
        )
        deps = SidecarDeps(
            clock=clock,
            publisher=publisher,
            db=db,
            fills_repo_factory=lambda: FillsRepository(Postgres(dsn, timeout=3.0)),
            configure_logs=False,
        )
        app = create_app(cfg, deps)
        server = SidecarServer(app, free_port()).start()
        stack = Stack(
            sim=sim,
            sidecar=server,
            clock=clock,
            db=mongo_db,
            redis=redis_connect(devstack.redis_url, timeout=2.0),
            alerts_key=alerts_key,
            pg_dsn=pg_dsn,
            followers={f.id: f for f in followers},
            settings=cfg,
            proxies=proxy_map,
            pubsub=pubsub,
            app_factory=lambda: create_app(cfg, deps),
        )
        created.append(stack)
        up = [f.id for f in followers if not f.down]
        wait_sessions_ready(stack.client, up, timeout=30)
        return stack

    yield factory
    for stack in created:
        if stack.http is not None:
            stack.http.close()
        stack.sidecar.stop()
        stack.sim.stop()
    for lt in proxy_loop:
        lt.stop()
    time.sleep(0.05)


@pytest.fixture
def person_for() -> Iterator[Callable[[int, str], Person]]:
    """``person_for(port, account)``: another API client on that gateway, closed after."""
    people: list[Person] = []

    def make(port: int, account: str) -> Person:
        people.append(Person(port, account))
        return people[-1]

    yield make
    for p in people:
        p.close()
