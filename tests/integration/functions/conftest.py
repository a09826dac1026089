"""Fixtures for the function tests: per-test environment and Pub/Sub topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fn_harness import FunctionEnv, Topic, function_env_for


@pytest.fixture
def function_env(
    devstack: Any, mongo_db: Any, pg_dsn: str, tmp_path: Path
) -> Iterator[FunctionEnv]:
    """Environment for function processes: this test's stores and Pub/Sub project."""
    with function_env_for(devstack, mongo_db, pg_dsn, tmp_path, "fn") as env:
        yield env


@pytest.fixture
def topics(function_env: FunctionEnv, pubsub_clients: tuple[Any, Any]) -> Callable[[str], Topic]:
    """``topics("signals")`` -> a created topic + subscription in the test's project."""
    publisher, subscriber = pubsub_clients

    def make(topic_id: str) -> Topic:
        return Topic(function_env.project_id, topic_id, publisher, subscriber).create()

    return make


# ---------------------------------------------------------------- the sidecar stack
# The sidecar's own test fixture (ibsim + the sidecar under uvicorn, followers in
# this test's MongoDB database) is reused as is, not re-implemented here.
def _load_sidecar_fixtures() -> Any:
    import importlib.util
    import sys

    directory = Path(__file__).resolve().parents[1] / "sidecar"
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(
        "sidecar_stack_fixtures", directory / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_sidecar_fixtures = _load_sidecar_fixtures()
make_stack = _sidecar_fixtures.make_stack
FollowerSpec = _sidecar_fixtures.FollowerSpec
person_for = _sidecar_fixtures.person_for
