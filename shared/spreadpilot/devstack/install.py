"""Installing what the local services run: Debian packages and Go builds.

PostgreSQL and Redis come from Debian's own packages (the versions a Debian
host runs in production-like setups, patched by Debian); FerretDB and Google's
Pub/Sub fake are built from the pinned Go module in ``tools/``, so every
machine runs the same versions that ``tools/go.sum`` locks. Both steps are
skipped when their result is already present, which keeps ``up`` fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from spreadpilot.devstack.paths import DevstackError, Layout

Report = Callable[[str], None]

#: Binaries built from ``tools/``: output name -> package path in that module.
GO_BINARIES: dict[str, str] = {
    "ferretdb": "./cmd/ferretdb",
    "pubsub-fake": "./cmd/pubsub-fake",
}

_STAMP = ".tools-stamp"


def _quiet(_: str) -> None:
    return None


# ---------------------------------------------------------------- Debian packages


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Debian keeps them in /usr/lib/postgresql/<major>/bin, off the PATH; a
    ``pg_ctl`` on the PATH (a symlink, or a non-Debian install) wins.
    """
    on_path = shutil.which("pg_ctl")
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def find_redis_server() -> Path | None:
    """The ``redis-server`` binary, or None."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    return Path(found) if found else None


def apt_install(packages: Sequence[str], report: Report = _quiet) -> None:
    """``apt-get update`` then install ``packages`` without recommends.

    Only called when a package is actually missing: an update is slow and
    needs the network, so a machine that has everything never pays for it.
    """
    if not shutil.which("apt-get"):
        raise DevstackError(
            f"Debian package(s) {', '.join(packages)} are missing and apt-get is not "
            "available; install them with your system's package manager"
        )
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise DevstackError(
                f"Debian package(s) {', '.join(packages)} are missing; installing them "
                "needs root (run as root or install sudo)"
            )
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    report(f"installing Debian package(s): {' '.join(packages)}")
    for argv in (
        [*prefix, "apt-get", "update", "-q"],
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise DevstackError(
                f"`{' '.join(argv)}` failed (exit {done.returncode}):\n" + "\n".join(out)
            )


def ensure_debian_packages(*, postgres: bool, redis: bool, report: Report = _quiet) -> None:
    """Install PostgreSQL and/or Redis from Debian when their binaries are missing."""
    missing: list[str] = []
    if postgres and find_pg_bindir() is None:
        missing.append("postgresql")
    if redis and find_redis_server() is None:
        missing.append("redis-server")
    if missing:
        apt_install(missing, report)
    if postgres and find_pg_bindir() is None:
        raise DevstackError("PostgreSQL: installed the Debian package but found no initdb/pg_ctl")
    if redis and find_redis_server() is None:
        raise DevstackError("Redis: installed the Debian package but found no redis-server")


# ---------------------------------------------------------------- Go builds


def find_go() -> str:
    """The ``go`` command; the official tarball's location is tried too."""
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )
    if not found:
        raise DevstackError(
            "FerretDB and the Pub/Sub fake are built from tools/ with Go, "
            "but no `go` command was found (Go >= 1.26 is needed)"
        )
    return found


def tools_fingerprint(tools_dir: Path) -> str:
    """Hash of everything that decides the built binaries.

    go.mod/go.sum pin the dependencies; our own Go sources are included so that
    editing a command's main.go rebuilds it too.
    """
    digest = hashlib.sha256()
    files = [tools_dir / "go.mod", tools_dir / "go.sum", *sorted(tools_dir.rglob("*.go"))]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(tools_dir)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def go_binaries_current(lay: Layout) -> bool:
    """Whether every Go binary exists and was built from the current sources."""
    stamp = lay.bin_dir / _STAMP
    if not all((lay.bin_dir / name).is_file() for name in GO_BINARIES):
        return False
    try:
        return stamp.read_text().strip() == tools_fingerprint(lay.tools_dir)
    except OSError:
        return False


def ensure_go_binaries(lay: Layout, report: Report = _quiet, *, force: bool = False) -> bool:
    """Build the Go binaries into ``.devstack/bin`` unless they are current.

    Returns whether a build ran. Binaries are built into a scratch directory
    and renamed into place, so a running server keeps its (old) executable and
    an interrupted build never leaves a half-written file that looks current.
    """
    if not force and go_binaries_current(lay):
        return False
    go = find_go()
    fingerprint = tools_fingerprint(lay.tools_dir)
    scratch = lay.bin_dir / ".build"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    report("building FerretDB and the Pub/Sub fake from tools/ (first time takes about a minute)")
    # CGO off: FerretDB's SQLite is pure Go, so no C toolchain is needed.
    env = {**os.environ, "CGO_ENABLED": "0"}
    argv = [go, "build", "-o", str(scratch) + "/", *GO_BINARIES.values()]
    done = subprocess.run(
        argv, cwd=lay.tools_dir, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        log = lay.bin_dir / "build.log"
        log.write_text(done.stdout + done.stderr)
        raise DevstackError(
            f"building the Go tools failed (exit {done.returncode}); log: {log}\n"
            + "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        )
    for name in GO_BINARIES:
        os.replace(scratch / name, lay.bin_dir / name)
    shutil.rmtree(scratch, ignore_errors=True)
    (lay.bin_dir / _STAMP).write_text(fingerprint + "\n")
    return True
