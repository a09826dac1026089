"""Installing what the local services and tests run: Debian packages and Go builds.

PostgreSQL and Redis come from Debian's own packages (the versions a Debian
host runs in production-like setups, patched by Debian). Everything else is
built with Go from a pinned module, so every machine runs the versions its
go.sum locks: FerretDB and Google's Pub/Sub fake from ``tools/`` (needed by
``services up``), OpenBao from ``tools/openbao`` and OpenTofu from
``tools/opentofu`` (needed only by the tests that use them, which call
:func:`ensure_binary` themselves). Every step is skipped when its result is
already present, which keeps a warm ``up`` fast.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from spreadpilot.devstack.paths import DevstackError, Layout, bin_cache_dir, layout
from spreadpilot.devstack.process import file_lock

Report = Callable[[str], None]


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


@dataclass(frozen=True)
class GoBinary:
    """How one binary is built: which module, which package, which link flags.

    ``module`` is relative to the repository root (an absolute path also works,
    which the unit tests use for a throw-away module). Each module's go.mod and
    go.sum pin every dependency, so the module's files plus this recipe decide
    the binary completely; that is what :func:`binary_fingerprint` hashes.
    """

    name: str
    module: str
    package: str
    what: str
    ldflags: str = "-s -w"


#: Everything built with Go, by output name under ``.devstack/bin``. Only the
#: first two are built by ``services up``; ``bao`` and ``tofu`` take minutes
#: cold and are built on first use by the tests that need them.
GO_BINARIES: dict[str, GoBinary] = {
    b.name: b
    for b in (
        GoBinary("ferretdb", "tools", "./cmd/ferretdb", "FerretDB"),
        GoBinary("pubsub-fake", "tools", "./cmd/pubsub-fake", "the Pub/Sub fake"),
        GoBinary("bao", "tools/openbao", "github.com/openbao/openbao", "OpenBao"),
        GoBinary(
            "tofu",
            "tools/opentofu",
            "github.com/opentofu/opentofu/cmd/tofu",
            "OpenTofu",
            # What OpenTofu's release build sets; without it `tofu version`
            # reports a "-dev" prerelease.
            ldflags="-s -w -X 'github.com/opentofu/opentofu/version.dev=no'",
        ),
    )
}

#: Flags of every build. -mod=readonly: go.mod/go.sum are the pin and must
#: never be rewritten by a build. -trimpath and -buildvcs=false: the binary
#: must not depend on where the checkout lives or on its git state, because
#: the per-user cache hands one build to every clone. CGO is off (see
#: :func:`_go_build`), so no C toolchain is needed either.
BUILD_FLAGS: tuple[str, ...] = ("-mod=readonly", "-trimpath", "-buildvcs=false")

#: A cold OpenTofu build is about five minutes on two busy cores; this only
#: stops a build that hangs (e.g. on an unreachable module proxy).
BUILD_TIMEOUT_SECONDS = 1800

#: Cache entries kept per binary name: the current one plus a few older ones,
#: so switching between branches with different pins does not rebuild.
CACHE_KEEP = 3

_LOCK = ".build.lock"


def find_go(purpose: str = "FerretDB and the Pub/Sub fake") -> str:
    """The ``go`` command; the official tarball's location is tried too."""
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )
    if not found:
        raise DevstackError(
            f"{purpose} is built from a Go module under tools/, "
            "but no `go` command was found (Go >= 1.26 is needed)"
        )
    return found


def _nested_modules(module_dir: Path) -> list[Path]:
    return [p.parent for p in module_dir.rglob("go.mod") if p.parent != module_dir]


def tools_fingerprint(module_dir: Path) -> str:
    """Hash of a Go module's own files: go.mod, go.sum and its non-test sources.

    go.mod/go.sum pin the dependencies; our own Go sources are included so that
    editing a command's main.go rebuilds it too. Nested modules (tools/openbao,
    tools/opentofu) are left out: they are separate builds, and bumping OpenTofu
    must not rebuild FerretDB.
    """
    nested = _nested_modules(module_dir)
    sources = sorted(
        p
        for p in module_dir.rglob("*.go")
        if not p.name.endswith("_test.go") and not any(p.is_relative_to(n) for n in nested)
    )
    digest = hashlib.sha256()
    for path in [module_dir / "go.mod", module_dir / "go.sum", *sources]:
        if path.is_file():
            digest.update(str(path.relative_to(module_dir)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def _spec(name: str) -> GoBinary:
    try:
        return GO_BINARIES[name]
    except KeyError:
        raise DevstackError(
            f"unknown Go binary {name!r}; known: {', '.join(GO_BINARIES)}"
        ) from None


def binary_fingerprint(name: str, lay: Layout | None = None) -> str:
    """The cache key of ``name``: its module's files, its build recipe, the platform.

    The recipe is part of the key so that changing a flag here rebuilds; the
    platform so that a home directory shared between machines of different
    architectures never hands out the wrong executable.
    """
    spec = _spec(name)
    module_dir = (lay or layout()).repo_root / spec.module
    recipe = "\0".join(
        [
            tools_fingerprint(module_dir),
            spec.package,
            spec.ldflags,
            *BUILD_FLAGS,
            "CGO_ENABLED=0",
            sys.platform,
            platform.machine(),
        ]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()


def _stamp(lay: Layout, name: str) -> Path:
    return lay.bin_dir / f".{name}.stamp"


def binary_current(name: str, lay: Layout | None = None) -> bool:
    """Whether ``.devstack/bin/<name>`` exists and was built from the current pin."""
    lay = lay or layout()
    try:
        stamped = _stamp(lay, name).read_text().strip()
    except OSError:
        return False
    return (lay.bin_dir / name).is_file() and stamped == binary_fingerprint(name, lay)


def write_stamp(name: str, lay: Layout | None = None) -> None:
    """Mark ``.devstack/bin/<name>`` as built from the current sources."""
    lay = lay or layout()
    _stamp(lay, name).write_text(binary_fingerprint(name, lay) + "\n")


def cached_binary(name: str, lay: Layout | None = None) -> Path:
    """Where the per-user cache keeps (or would keep) the current build of ``name``."""
    return bin_cache_dir() / f"{name}-{binary_fingerprint(name, lay)[:16]}"


def ensure_binary(name: str, *, lay: Layout | None = None, report: Report = _quiet) -> Path:
    """``.devstack/bin/<name>``, current with its pinned Go module; built only if needed.

    Three tiers, cheapest first:

    1. the checkout's own copy, when its stamp matches: a few file reads and
       no lock, which is what keeps a warm ``services up`` fast;
    2. the per-user cache (:func:`~spreadpilot.devstack.paths.bin_cache_dir`):
       a fresh clone on a machine that built this pin before gets the binary
       by a hard link (a copy across file systems) in milliseconds;
    3. ``go build`` into the cache, then as in 2.

    Builds hold one per-user lock, so concurrent test sessions and ``services
    up`` never compile at once: OpenTofu alone takes 1.5 GB and both cores.
    The loser of a race waits and then finds the winner's binary. Raises
    :class:`DevstackError` with the tail of the build log when a build fails.
    """
    lay = lay or layout()
    spec = _spec(name)
    target = lay.bin_dir / name
    if binary_current(name, lay):
        return target
    cache = bin_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / _LOCK):
        if binary_current(name, lay):
            return target
        cached = cached_binary(name, lay)
        if cached.is_file():
            report(f"{spec.what}: reusing {cached}")
            os.utime(cached)  # most recently used: the last to be pruned
        else:
            _go_build(spec, lay, cached, report)
            _prune(cache, name, keep=cached)
        _install(cached, target)
        write_stamp(name, lay)
    return target


def _go_build(spec: GoBinary, lay: Layout, out: Path, report: Report) -> None:
    """``go build`` ``spec`` into ``out``, atomically; the log goes to .devstack/bin.

    Built under a scratch name and renamed, so an interrupted build never
    leaves a file in the cache that looks finished.
    """
    module_dir = lay.repo_root / spec.module
    go = find_go(spec.what)
    lay.bin_dir.mkdir(parents=True, exist_ok=True)
    log = lay.bin_dir / f"{spec.name}.build.log"
    scratch = out.with_name(f".{out.name}.tmp")
    scratch.unlink(missing_ok=True)
    argv = [go, "build", *BUILD_FLAGS, f"-ldflags={spec.ldflags}", "-o", str(scratch)]
    argv.append(spec.package)
    # CGO off: none of these needs C (FerretDB's SQLite is pure Go), and static
    # binaries do not care which libc the machine that reuses them has.
    env = {**os.environ, "CGO_ENABLED": "0"}
    report(f"{spec.what}: building from {module_dir} (cold: minutes; cached afterwards)")
    started = time.monotonic()
    with log.open("w") as fh:
        fh.write(f"$ cd {shlex.quote(str(module_dir))} && {shlex.join(argv)}\n")
        fh.flush()
        try:
            done = subprocess.run(
                argv,
                cwd=module_dir,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT_SECONDS,
                check=False,
            )
            failure = f"exit {done.returncode}" if done.returncode != 0 else None
        except subprocess.TimeoutExpired:
            failure = f"no result after {BUILD_TIMEOUT_SECONDS} s"
    if failure is not None:
        scratch.unlink(missing_ok=True)
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-30:])
        raise DevstackError(
            f"{spec.what}: `go build {spec.package}` in {module_dir} failed ({failure}); "
            f"log: {log}\n{tail}"
        )
    os.replace(scratch, out)
    report(f"{spec.what}: built in {time.monotonic() - started:.0f} s, cached as {out}")


def _install(cached: Path, target: Path) -> None:
    """Put the cached binary at ``target`` by hard link, or copy across file systems.

    Replaced by rename, so a server still running the old executable keeps it.
    A hard link is safe because neither side is ever written in place: the
    cache only gains files by rename, and pruning it only drops a name.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.tmp")
    scratch.unlink(missing_ok=True)
    try:
        os.link(cached, scratch)
    except OSError:
        shutil.copy2(cached, scratch)
    os.replace(scratch, target)


def _prune(cache: Path, name: str, keep: Path) -> None:
    """Drop all but the :data:`CACHE_KEEP` most recently used builds of ``name``.

    OpenBao and OpenTofu are ~100 MB each; without pruning every version bump
    would leave one more behind for good.
    """
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}")
    entries = [p for p in cache.iterdir() if pattern.fullmatch(p.name) and p != keep]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[CACHE_KEEP - 1 :]:
        stale.unlink(missing_ok=True)
