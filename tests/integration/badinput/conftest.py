"""Fixtures for the bad-input suite: real functions-framework processes on this
test's own stores, driven through the same harness as the function tests."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The function harness lives beside the function tests; reuse it rather than a copy.
_FUNCTIONS_TESTS = Path(__file__).resolve().parents[1] / "functions"
if str(_FUNCTIONS_TESTS) not in sys.path:
    sys.path.insert(0, str(_FUNCTIONS_TESTS))

from fn_harness import FunctionEnv  # noqa: E402


@pytest.fixture
def function_env(
    devstack: Any, mongo_db: Any, pg_dsn: str, tmp_path: Path
) -> Iterator[FunctionEnv]:
    """Environment for function processes: this test's stores and Pub/Sub project."""
    project = f"bad-{uuid.uuid4().hex[:10]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
    base.update(devstack.environ())
    base.update(
        {
            "MONGO_DB": mongo_db.name,
            "PNL_DATABASE_URL": pg_dsn,
            "PUBSUB_PROJECT_ID": project,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env = FunctionEnv(base, mongo_db.name, pg_dsn, project, tmp_path)
    yield env
    for server in env.servers:
        server.stop()
