"""Fixtures for the bad-input suite: real functions-framework processes on this
test's own stores, driven through the same harness as the function tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The function harness lives beside the function tests; reuse it rather than a copy.
_FUNCTIONS_TESTS = Path(__file__).resolve().parents[1] / "functions"
if str(_FUNCTIONS_TESTS) not in sys.path:
    sys.path.insert(0, str(_FUNCTIONS_TESTS))

from fn_harness import FunctionEnv, function_env_for  # noqa: E402


@pytest.fixture
def function_env(
    devstack: Any, mongo_db: Any, pg_dsn: str, tmp_path: Path
) -> Iterator[FunctionEnv]:
    """Environment for function processes: this test's stores and Pub/Sub project."""
    with function_env_for(devstack, mongo_db, pg_dsn, tmp_path, "bad") as env:
        yield env
