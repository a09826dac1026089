"""Where the local service stack keeps its binaries, data, pidfiles and logs.

Everything lives under one directory (``.devstack/`` at the repository root by
default) so that ``rm -rf .devstack`` is a complete reset and nothing is
written to system locations. ``SP_DEVSTACK_DIR`` moves it, which lets a test
run a second, throw-away stack next to a developer's own.

The one exception is the per-user cache of Go-built binaries (see
:func:`bin_cache_dir`): it outlives ``.devstack`` on purpose, so that a fresh
clone on the same machine (every CI run) links the binaries instead of
rebuilding them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEVSTACK_DIR_ENV = "SP_DEVSTACK_DIR"
BIN_CACHE_ENV = "SP_BIN_CACHE_DIR"


class DevstackError(RuntimeError):
    """A local service could not be installed, started or stopped.

    The message always names the service and, where there is one, the log file
    to read, because "it did not start" alone sends people digging.
    """


def _looks_like_repo_root(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "tools" / "go.mod").is_file()


def find_repo_root() -> Path:
    """The repository root: from this package's location, else from the cwd.

    The package location works for the editable install every developer and
    CI use; the cwd fallback covers a non-editable install run from a checkout.
    """
    here = Path(__file__).resolve()
    for candidate in (*here.parents, *Path.cwd().resolve().parents, Path.cwd().resolve()):
        if _looks_like_repo_root(candidate):
            return candidate
    raise DevstackError(
        "cannot find the SpreadPilot repository root (a directory holding pyproject.toml "
        "and tools/go.mod); run from inside the checkout"
    )


@dataclass(frozen=True)
class Layout:
    """Absolute paths of everything the local stack reads or writes."""

    repo_root: Path
    root: Path

    @property
    def tools_dir(self) -> Path:
        """The Go module that builds FerretDB and the Pub/Sub fake."""
        return self.repo_root / "tools"

    @property
    def bin_dir(self) -> Path:
        """Go-built binaries, cached between runs."""
        return self.root / "bin"

    @property
    def lock_file(self) -> Path:
        """Serialises up/down between concurrent callers (CLI, pytest sessions)."""
        return self.root / "devstack.lock"

    def service_dir(self, name: str) -> Path:
        """Per-service directory holding its data, pidfile and log."""
        return self.root / name


def layout() -> Layout:
    """The layout for this checkout, honouring ``SP_DEVSTACK_DIR``."""
    repo = find_repo_root()
    override = os.environ.get(DEVSTACK_DIR_ENV)
    root = Path(override).expanduser().resolve() if override else repo / ".devstack"
    return Layout(repo_root=repo, root=root)


def bin_cache_dir() -> Path:
    """Per-user cache of Go-built binaries, shared by every checkout on the machine.

    ``.devstack/`` is empty in each fresh clone (CI clones anew every run) while
    a cold build of OpenTofu or OpenBao costs minutes, so finished binaries are
    kept under ``${XDG_CACHE_HOME:-~/.cache}/spreadpilot/bin`` as
    ``<name>-<fingerprint>``. ``SP_BIN_CACHE_DIR`` moves it (tests use that to
    start from an empty cache).
    """
    override = os.environ.get(BIN_CACHE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "spreadpilot" / "bin"
