"""Each local service answers the real client library the application uses.

These are the contracts the rest of the suite relies on: if one fails, the
problem is the stack, not the code under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pymongo
import pymongo.errors
import pytest
from spreadpilot.adapters.postgres import parse_dsn
from spreadpilot.devstack import (
    PORT_VARIABLES,
    ServiceEnv,
    ensure_services,
    layout,
    services_status,
    stop_services,
)
from spreadpilot.devstack.process import port_open


def test_postgres_round_trip_over_password_auth(pg_dsn: str) -> None:
    params = parse_dsn(pg_dsn)
    conn = pg8000.native.Connection(
        user=params.user,
        password=params.password,
        host=params.host,
        port=params.port,
        database=params.database,
    )
    try:
        assert conn.run("SELECT current_database()") == [[params.database]]
        conn.run("CREATE TABLE pnl (id serial PRIMARY KEY, follower text, amount numeric(12,2))")
        conn.run("INSERT INTO pnl (follower, amount) VALUES (:f, :a)", f="F1", a="12.50")
        conn.run("INSERT INTO pnl (follower, amount) VALUES (:f, :a)", f="F2", a="-3.25")
        rows = conn.run("SELECT follower, amount::text FROM pnl ORDER BY id")
        assert rows == [["F1", "12.50"], ["F2", "-3.25"]]
    finally:
        conn.close()


def test_each_test_gets_an_empty_database(pg_dsn: str) -> None:
    params = parse_dsn(pg_dsn)
    conn = pg8000.native.Connection(
        user=params.user,
        password=params.password,
        host=params.host,
        port=params.port,
        database=params.database,
    )
    try:
        tables = conn.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert tables == []
    finally:
        conn.close()


def test_redis_stream_with_consumer_group(
    redis_client: Any, redis_key: Callable[[str], str]
) -> None:
    stream = redis_key("alerts")
    first = redis_client.xadd(stream, {"alert": '{"type": "NO_MARGIN"}'}, maxlen=1000)
    redis_client.xadd(stream, {"alert": '{"type": "MID_TOO_LOW"}'})
    redis_client.xgroup_create(stream, "fanout", id="0")

    got = redis_client.xreadgroup("fanout", "worker-1", {stream: ">"}, count=10, block=1000)
    [(name, entries)] = got
    assert name == stream.encode()
    assert [e[1][b"alert"] for e in entries] == [
        b'{"type": "NO_MARGIN"}',
        b'{"type": "MID_TOO_LOW"}',
    ]
    assert entries[0][0] == first

    # Unacknowledged entries stay pending for the group until XACK.
    assert redis_client.xpending(stream, "fanout")["pending"] == 2
    assert redis_client.xack(stream, "fanout", *(e[0] for e in entries)) == 2
    assert redis_client.xpending(stream, "fanout")["pending"] == 0


def test_mongo_unique_index_rejects_duplicates(mongo_db: Any) -> None:
    followers = mongo_db["followers"]
    followers.create_index("account_id", unique=True)
    followers.insert_one({"_id": "f1", "account_id": "DU111", "enabled": True})
    followers.insert_one({"_id": "f2", "account_id": "DU222", "enabled": False})

    with pytest.raises(pymongo.errors.DuplicateKeyError):
        followers.insert_one({"_id": "f3", "account_id": "DU111"})

    found = list(followers.find({"enabled": True}, {"_id": 1}))
    assert found == [{"_id": "f1"}]
    assert followers.count_documents({}) == 2


def test_mongo_lookups_use_an_index_in_ferretdb_storage(mongo_db: Any) -> None:
    """FerretDB 1.24 looks documents up with ``_jsonb->'f' @> value``, which its
    own btree indexes cannot serve; the devstack gives each one a GIN twin.
    Proven on the storage cluster itself: the twins exist for ``_id`` and for
    a field indexed through pymongo, and PostgreSQL's plan for the lookup
    FerretDB sends (the field name a parameter) is an index scan, not a scan
    of every document."""
    from spreadpilot.devstack.services import (
        FERRETDB_PG_DATABASE,
        PG_PASSWORD,
        PG_USER,
        configured_port,
    )

    col = mongo_db["executions"]
    col.create_index("signal_id")
    col.insert_many([{"_id": f"e{i}", "signal_id": f"s{i % 50}"} for i in range(2000)])
    assert col.find_one({"_id": "e1234"}) == {"_id": "e1234", "signal_id": "s34"}

    conn = pg8000.native.Connection(
        user=PG_USER,
        password=PG_PASSWORD,
        host="127.0.0.1",
        port=configured_port("ferretdb-pg"),
        database=FERRETDB_PG_DATABASE,
    )
    try:
        rows = conn.run(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind = 'i'",
            schema=mongo_db.name,
        )
        gin = [d for _, d in rows if "USING gin" in d and "jsonb_path_ops" in d]
        assert any("'_id'" in d and "executions" in d.split(" ON ")[1] for d in gin), rows
        assert any("'signal_id'" in d for d in gin), rows
        (table,) = {d.split(" ON ")[1].split(" ")[0] for d in gin if "'signal_id'" in d}
        conn.run("ANALYZE " + table)
        conn.run(
            f"PREPARE lookup(text, jsonb) AS SELECT _jsonb FROM {table} WHERE _jsonb->$1 @> $2"
        )
        plan = "\n".join(r[0] for r in conn.run("EXPLAIN EXECUTE lookup('_id', '\"e1234\"')"))
        assert "Index Scan" in plan and "Seq Scan" not in plan, plan
    finally:
        conn.close()


def test_pubsub_publish_then_synchronous_pull(pubsub: Any) -> None:
    pubsub.create()
    future = pubsub.publisher.publish(pubsub.topic_path, b'{"id": "a1"}', severity="CRITICAL")
    message_id = future.result(timeout=10)

    deadline = time.monotonic() + 10
    received: list[Any] = []
    while not received and time.monotonic() < deadline:
        response = pubsub.subscriber.pull(
            request={"subscription": pubsub.subscription_path, "max_messages": 10},
            timeout=5,
        )
        received = list(response.received_messages)
    assert len(received) == 1
    msg = received[0].message
    assert msg.message_id == message_id
    assert msg.data == b'{"id": "a1"}'
    assert msg.attributes["severity"] == "CRITICAL"
    pubsub.subscriber.acknowledge(
        request={"subscription": pubsub.subscription_path, "ack_ids": [received[0].ack_id]}
    )


def test_pubsub_uses_the_fake_from_the_environment(devstack: ServiceEnv) -> None:
    assert os.environ["PUBSUB_EMULATOR_HOST"] == devstack.pubsub_emulator_host
    assert os.environ["PUBSUB_PROJECT_ID"] == devstack.pubsub_project_id


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("spreadpilot")
    argv = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from spreadpilot.cli import main; main()"]
    )
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=300, check=False)


def _pids(status_out: str) -> dict[str, str]:
    rows = [line.split() for line in status_out.splitlines()[1:] if line.strip()]
    return {row[0]: row[3] for row in rows}


def test_cli_up_is_idempotent_and_reports_ports(devstack: ServiceEnv) -> None:
    first = _cli("services", "up")
    assert first.returncode == 0, first.stderr
    started = time.monotonic()
    second = _cli("services", "up")
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    # Nothing was restarted: same pids, and no "starting" line.
    assert _pids(first.stdout) == _pids(second.stdout)
    assert "starting" not in second.stderr
    assert elapsed < 10, f"a warm `up` took {elapsed:.1f} s"

    status = _cli("services", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for port in (devstack.pg_port, devstack.redis_port, devstack.mongo_port, devstack.pubsub_port):
        assert str(port) in status.stdout
    assert all(line.split()[1] == "up" for line in status.stdout.splitlines()[1:])

    env = _cli("services", "env")
    assert env.returncode == 0, env.stderr
    for key, value in devstack.environ().items():
        assert f"export {key}={value}" in env.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def isolated_stack(devstack: ServiceEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second, private stack on free ports, so killing servers hurts nobody.

    It lives under /tmp (not pytest's root-only tmp_path) because PostgreSQL
    runs as the `postgres` account, and reuses the shared stack's Go binaries
    to skip a rebuild.
    """
    shared_bin = layout().bin_dir
    root = Path(tempfile.mkdtemp(prefix="spreadpilot-devstack-", dir="/tmp"))
    root.chmod(0o755)
    shutil.copytree(shared_bin, root / "bin")
    monkeypatch.setenv("SP_DEVSTACK_DIR", str(root))
    for var in PORT_VARIABLES:
        monkeypatch.setenv(var, str(_free_port()))
    try:
        yield root
    finally:
        stop_services()
        shutil.rmtree(root, ignore_errors=True)


def test_stack_recovers_from_killed_servers_and_keeps_data(isolated_stack: Path) -> None:
    env = ensure_services()
    client: Any = pymongo.MongoClient(env.mongo_uri, serverSelectionTimeoutMS=5000)
    client.spreadpilot.followers.insert_one({"_id": "f1"})
    client.close()
    before = {s.name: s.pid for s in services_status()}
    assert all(before.values())

    for name in ("redis", "ferretdb", "pubsub"):
        pid = before[name]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(s.running for s in services_status()[1:]):
        time.sleep(0.05)
    assert [s.running for s in services_status()] == [True, False, False, False]

    assert ensure_services() == env
    after = {s.name: s.pid for s in services_status()}
    assert after["postgres"] == before["postgres"]
    assert all(after[n] not in (None, before[n]) for n in ("redis", "ferretdb", "pubsub"))
    client = pymongo.MongoClient(env.mongo_uri, serverSelectionTimeoutMS=5000)
    assert client.spreadpilot.followers.find_one({"_id": "f1"}) == {"_id": "f1"}

    # FerretDB keeps its data in a PostgreSQL cluster of its own: the P&L
    # database's server going down does not take MongoDB with it.
    assert stop_services(["postgres"]) == ["postgres"]
    client.spreadpilot.followers.insert_one({"_id": "f2"})
    assert client.spreadpilot.followers.count_documents({}) == 2
    client.close()
    assert ensure_services(["postgres"]) == env

    assert sorted(stop_services()) == sorted(after)
    assert not any(s.running for s in services_status())
    for port in (env.pg_port, env.redis_port, env.mongo_port, env.pubsub_port):
        assert not port_open("127.0.0.1", port)
