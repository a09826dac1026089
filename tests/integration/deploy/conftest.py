"""A real OpenBao (Vault API) server for the secrets backend tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from openbao_server import Bao, dev_server
from spreadpilot.devstack import DevstackError, ensure_binary


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """A running OpenBao; the binary is built once per machine and pin, a failed build fails."""
    failure: str | None = None
    try:
        binary = ensure_binary("bao")
    except DevstackError as err:
        failure = str(err)
    if failure is not None:
        # Outside the except block, so the report is the build log, not a traceback chain.
        pytest.fail(f"cannot build OpenBao from tools/openbao:\n{failure}", pytrace=False)
    workdir: Path = tmp_path_factory.mktemp("openbao")
    with dev_server(binary, workdir, root_token=f"root-{secrets.token_hex(8)}") as server:
        yield server
