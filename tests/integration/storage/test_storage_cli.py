"""``spreadpilot db`` and ``spreadpilot followers`` through click, on the real servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from spreadpilot.adapters.postgres import Postgres
from spreadpilot.cli import main
from spreadpilot.devstack import ServiceEnv
from spreadpilot.storage.executions import ExecutionsRepository

pytestmark = pytest.mark.integration

IBAN = "DE89370400440532013000"


def test_db_migrate_is_idempotent(pg_dsn: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["db", "migrate", "--dsn", pg_dsn])
    assert first.exit_code == 0, first.output
    assert "applied 0001_fills.sql" in first.output and "migrated at version" in first.output
    second = runner.invoke(main, ["db", "migrate", "--dsn", pg_dsn])
    assert second.exit_code == 0 and "applied" not in second.output.split(":")[0]
    assert "up to date" in second.output
    assert "spreadpilot:spreadpilot@" not in first.output + second.output  # password masked
    status = runner.invoke(main, ["db", "status", "--dsn", pg_dsn])
    assert status.exit_code == 0 and "pending" not in status.output
    pg = Postgres(pg_dsn)
    assert pg.query("SELECT count(*) FROM schema_migrations")[0][0] >= 3
    pg.close()


def test_db_status_reports_pending(pg_dsn: str) -> None:
    result = CliRunner().invoke(main, ["db", "status", "--dsn", pg_dsn])
    assert result.exit_code == 1 and "pending  0001_fills.sql" in result.output


def test_db_migrate_unreachable_is_a_clear_error() -> None:
    result = CliRunner().invoke(
        main, ["db", "migrate", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/x"]
    )
    assert result.exit_code == 1
    assert "cannot migrate" in result.output and "hunter2" not in result.output


def test_db_init_creates_indexes(devstack: ServiceEnv, mongo_db: Any) -> None:
    args = ["db", "init", "--mongo-uri", devstack.mongo_uri, "--mongo-db", mongo_db.name]
    for _ in range(2):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert "indexes ready: executions" in result.output
    index = mongo_db["executions"].index_information()["signal_follower_unique"]
    assert index["unique"] is True
    assert mongo_db["signals"].index_information()["trading_date_unique"]["unique"] is True
    assert ExecutionsRepository(mongo_db).find_unfinished() == []


@pytest.fixture
def cli(devstack: ServiceEnv, mongo_db: Any) -> Any:
    runner = CliRunner()
    prefix = ["followers", "--mongo-uri", devstack.mongo_uri, "--mongo-db", mongo_db.name]

    def invoke(*args: str) -> Any:
        return runner.invoke(main, [*prefix, *args])

    return invoke


def test_followers_lifecycle(cli: Any, mongo_db: Any) -> None:
    added = cli(
        "add", "follower123", "--name", "Alice", "--account", "DU1234567",
        "--gateway-port", "4012", "--client-id", "7", "--iban", IBAN,
        "--email", "alice@example.com", "--qty-multiplier", "1.5",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert IBAN not in added.output and "DE89" in added.output  # masked
    assert mongo_db["followers"].find_one({"_id": "follower123"})["iban"] == IBAN

    listed = cli("list")
    assert listed.exit_code == 0 and "follower123" in listed.output and IBAN not in listed.output
    shown = json.loads(cli("show", "follower123", "--json").output)
    assert shown["gateway"] == {"host": "127.0.0.1", "port": 4012, "client_id": 7}
    assert shown["qty_multiplier"] == 1.5 and shown["iban"] != IBAN

    changed = cli("set", "follower123", "--max-qty-per-leg", "25", "--clear", "email")
    assert changed.exit_code == 0, changed.output
    shown = json.loads(cli("show", "follower123", "--json").output)
    assert shown["max_qty_per_leg"] == 25 and shown["email"] is None

    assert cli("disable", "follower123").exit_code == 0
    assert json.loads(cli("list", "--enabled-only", "--json").output) == []
    assert "state ACTIVE" in cli("enable", "follower123").output
    halted = cli("set", "follower123", "--state", "halted")
    assert (
        halted.exit_code == 0
        and json.loads(cli("show", "follower123", "--json").output)["state"] == "HALTED"
    )


def test_unknown_follower_exits_2_naming_it(cli: Any) -> None:
    for args in (("show", "ghost"), ("enable", "ghost"), ("set", "ghost", "--name", "x")):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "'ghost' not found" in result.output


def test_invalid_fields_name_the_field_and_reason(cli: Any) -> None:
    assert cli("add", "f1", "--name", "A", "--account", "DU1234567").exit_code == 0
    bad = cli("set", "f1", "--qty-multiplier", "-1")
    assert bad.exit_code == 2 and "invalid qty_multiplier" in bad.output
    assert "greater than 0" in bad.output
    port = cli("set", "f1", "--gateway-port", "70000")
    assert port.exit_code == 2 and "invalid gateway.port" in port.output
    iban = cli("set", "f1", "--iban", "DE00123")
    assert iban.exit_code == 2 and "invalid iban" in iban.output
    slug = cli("add", "Not A Slug", "--name", "A", "--account", "DU1234567")
    assert slug.exit_code == 2 and "invalid id" in slug.output
    duplicate = cli("add", "f1", "--name", "A", "--account", "DU1234567")
    assert duplicate.exit_code == 2 and "'f1' already exists" in duplicate.output
    typed = cli("set", "f1", "--max-qty-per-leg", "many")
    assert typed.exit_code == 2 and "--max-qty-per-leg" in typed.output
    nothing = cli("set", "f1")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
