"""Fixtures for the ibsim integration tests (helpers live in ibsim_testkit.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ibsim_testkit import LibraryLog, capture_library_logs


@pytest.fixture
def library_logs() -> Iterator[LibraryLog]:
    """Fails the test if either client library logged a dropped message or a hang."""
    with capture_library_logs() as logs:
        yield logs
    assert logs.problems() == []
