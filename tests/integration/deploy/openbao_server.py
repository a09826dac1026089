"""OpenBao for the Vault backend's tests: built once from tools/openbao, run in dev mode.

Built like the other local stand-ins: ``go build`` of a pinned module into
``.devstack/bin/bao``, skipped when a stamp (the hash of tools/openbao's
go.mod and go.sum) says the binary is current. A cold build takes several
minutes on two cores and is cached afterwards. Concurrent test runs
serialise on a lock file, so two sessions never build at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from spreadpilot.devstack import DevstackError, layout
from spreadpilot.devstack.install import find_go

STAMP = ".openbao-stamp"
BUILD_TIMEOUT_SECONDS = 1500


def _fingerprint(module_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update(name.encode() + b"\0" + (module_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_openbao() -> Path:
    """The ``bao`` binary under .devstack/bin, built from tools/openbao if stale."""
    lay = layout()
    module_dir = lay.repo_root / "tools" / "openbao"
    binary = lay.bin_dir / "bao"
    stamp = lay.bin_dir / STAMP
    want = _fingerprint(module_dir)
    lay.bin_dir.mkdir(parents=True, exist_ok=True)
    with open(lay.bin_dir / ".openbao.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
            return binary
        tmp = binary.with_suffix(".tmp")
        started = time.monotonic()
        done = subprocess.run(
            [
                find_go(),
                "build",
                "-mod=readonly",
                "-trimpath",
                "-o",
                str(tmp),
                "github.com/openbao/openbao",
            ],
            cwd=module_dir,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise DevstackError(f"OpenBao: `go build` in {module_dir} failed:\n{tail}")
        tmp.replace(binary)
        stamp.write_text(want + "\n")
        print(f"[openbao] built {binary} in {time.monotonic() - started:.0f} s")
        return binary


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
