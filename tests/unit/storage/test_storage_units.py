"""Pure parts of the storage layer: migration files, value conversions, redaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

import pytest
from spreadpilot.adapters.mongo import to_bson
from spreadpilot.adapters.postgres import DsnError, parse_dsn
from spreadpilot.storage.alerts import redact_error
from spreadpilot.storage.fills import ExecutionFill, ib_optional_amount, to_decimal
from spreadpilot.storage.migrate import (
    MigrationError,
    load_migrations,
    order_migrations,
    parse_migration_filename,
)
from spreadpilot.storage.pnl import CommissionStatement, month_start


def test_migration_filename_parsing() -> None:
    assert parse_migration_filename("0003_pnl_monthly.sql") == (3, "pnl_monthly")
    for bad in ("3_x.sql", "0003-x.sql", "0003_X.sql", "0003_.sql", "abcd_x.sql"):
        with pytest.raises(MigrationError, match="not named"):
            parse_migration_filename(bad)


def test_migrations_are_ordered_by_version_not_by_name() -> None:
    ordered = order_migrations(
        {"0002_b.sql": "select 2", "0001_z.sql": "select 1", "__init__.py": "", "0003_a.sql": "x"}
    )
    assert [m.version for m in ordered] == [1, 2, 3]
    assert ordered[0].filename == "0001_z.sql"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "x", "0003_c.sql": "y"}, "without gaps"),
        ({"0002_a.sql": "x"}, "without gaps"),
        ({"0001_a.sql": "x", "0001_b.sql": "y"}, "share version 1"),
        ({"0001_a.sql": "  \n"}, "empty"),
    ],
)
def test_inconsistent_migration_sets_are_rejected(files: dict[str, str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        order_migrations(files)


def test_packaged_migrations_load_in_order_with_stable_checksums() -> None:
    first, second = load_migrations(), load_migrations()
    assert [m.version for m in first] == list(range(1, len(first) + 1))
    assert [m.filename for m in first][:3] == [
        "0001_fills.sql",
        "0002_pnl_intraday_daily.sql",
        "0003_pnl_monthly_commission.sql",
    ]
    assert [m.checksum for m in first] == [m.checksum for m in second]


def test_dsn_parsing_and_redaction() -> None:
    p = parse_dsn("postgresql://sp:s%40cret@127.0.0.1:55432/pnl?sslmode=require")
    assert (p.user, p.password, p.host, p.port, p.database) == (
        "sp",
        "s@cret",
        "127.0.0.1",
        55432,
        "pnl",
    )
    assert p.sslmode == "require"
    assert "s@cret" not in p.redacted() and "***" in p.redacted()
    sock = parse_dsn("postgresql://sp@/pnl?host=/cloudsql/proj:region:inst")
    assert sock.unix_sock == "/cloudsql/proj:region:inst/.s.PGSQL.5432"
    with pytest.raises(DsnError):
        parse_dsn("mysql://x@h/db")
    with pytest.raises(DsnError):
        parse_dsn("postgresql://127.0.0.1/db")


def test_ib_amounts() -> None:
    assert to_decimal(0.7) == Decimal("0.7")
    assert ib_optional_amount(1.7976931348623157e308) is None  # IB's "unset"
    assert ib_optional_amount(float("nan")) is None
    assert ib_optional_amount(None) is None
    assert ib_optional_amount(-12.5) == Decimal("-12.5")
    with pytest.raises(ValueError):
        to_decimal(float("inf"))


def _fill(**overrides: object) -> ExecutionFill:
    values: dict[str, object] = {
        "exec_id": "e1",
        "follower_id": "f1",
        "account": "DU1",
        "symbol": "QQQ",
        "sec_type": "OPT",
        "side": "BOT",
        "qty": Decimal(1),
        "price": Decimal("1.2"),
        "exec_time": datetime(2026, 1, 5, 15, 0, tzinfo=UTC),
        "trading_date": date(2026, 1, 5),
    }
    values.update(overrides)
    return ExecutionFill(**values)  # type: ignore[arg-type]


def test_execution_fill_validation() -> None:
    assert _fill().exec_id == "e1"
    for bad in (
        {"side": "BUY"},
        {"qty": Decimal(0)},
        {"exec_time": datetime(2026, 1, 5, 15, 0)},
        {"right": "X"},
        {"exec_id": ""},
    ):
        with pytest.raises(ValueError):
            _fill(**bad)


def test_commission_statement_never_mislabels_currency() -> None:
    with pytest.raises(ValueError, match="fx_rate"):
        CommissionStatement(
            follower_id="f1",
            month=date(2026, 1, 1),
            pnl=Decimal(100),
            commission_pct=Decimal(20),
            commission_amount=Decimal(20),
            currency="EUR",
            payable=True,
        )
    assert month_start(date(2026, 2, 17)) == date(2026, 2, 1)


class _Color(StrEnum):
    RED = "red"


def test_to_bson_conversions() -> None:
    at = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    doc = to_bson(
        {"d": date(2026, 1, 5), "n": Decimal("1.10"), "e": _Color.RED, "t": at, "l": (1,)}
    )
    assert doc == {"d": "2026-01-05", "n": "1.10", "e": "red", "t": at, "l": [1]}
    with pytest.raises(ValueError, match="naive"):
        to_bson(datetime(2026, 1, 5))


def test_redact_error_masks_credentials_and_caps_length() -> None:
    text = redact_error("POST https://api.telegram.org/bot123456:AAbb-cc_dd/sendMessage failed")
    assert "123456:AAbb" not in text and "bot***" in text
    assert "SG.***" in redact_error("key SG.abc.def rejected")
    assert "xyz" not in redact_error("Authorization: Bearer xyz")
    assert len(redact_error("x" * 10_000)) == 500
