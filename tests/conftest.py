"""Settings shared by every test directory.

Kept deliberately light: nothing here starts a server, so ``tests/unit`` runs
anywhere. Real services are brought up only by ``tests/integration/conftest.py``
(and the end-to-end suite), and only for tests that ask for them.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# Tests are marked by the directory they live in, so `-m "not integration"`
# works without every module remembering to mark itself.
_DIR_MARKERS = {"integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(TESTS_DIR)
        except ValueError:
            continue
        marker = _DIR_MARKERS.get(rel.parts[0]) if rel.parts else None
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))


def unique_name(prefix: str = "test") -> str:
    """A short name no other test (or concurrent test run) will pick.

    Lower-case letters, digits and underscores only, so it is valid as a
    PostgreSQL or MongoDB database name, a Redis key part and a Pub/Sub id.
    """
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_id() -> str:
    """A fresh ``unique_name()`` for the test."""
    return unique_name()
