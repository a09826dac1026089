"""A real OpenBao (Vault API) server for the secrets backend tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from openbao_server import Bao, dev_server, ensure_openbao


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    binary = ensure_openbao()
    workdir: Path = tmp_path_factory.mktemp("openbao")
    with dev_server(binary, workdir, root_token=f"root-{secrets.token_hex(8)}") as server:
        yield server
