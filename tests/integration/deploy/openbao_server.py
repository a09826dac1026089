"""OpenBao for the Vault backend's tests: a dev-mode server on loopback.

The binary comes from ``spreadpilot.devstack.ensure_binary("bao")`` (see
conftest.py): ``go build`` of the pinned module in tools/openbao into
``.devstack/bin/bao``, through the per-user binary cache, so only the first
run on a machine pays for the build (minutes on two cores).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from spreadpilot.devstack import DevstackError


@dataclass(frozen=True)
class Bao:
    addr: str
    root_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.addr, headers={"X-Vault-Token": token or self.root_token}, timeout=5.0
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dev_server(binary: Path, workdir: Path, root_token: str) -> Iterator[Bao]:
    """A dev-mode server on loopback: in-memory, unsealed, KV v2 at ``secret/``."""
    port = _free_port()
    addr = f"http://127.0.0.1:{port}"
    log = (workdir / "bao.log").open("w")
    env = {**os.environ, "HOME": str(workdir), "BAO_ADDR": addr}
    proc = subprocess.Popen(
        [
            str(binary),
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-root-token-id={root_token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise DevstackError(f"OpenBao exited ({proc.returncode}); see {log.name}")
            try:
                if httpx.get(f"{addr}/v1/sys/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise DevstackError(f"OpenBao did not become healthy; see {log.name}")
            time.sleep(0.2)
        yield Bao(addr, root_token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
