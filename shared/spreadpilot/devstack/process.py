"""Process plumbing for long-lived local services.

Services must outlive the command that started them (``spreadpilot services
up`` returns; a pytest session ends and the next one reuses the servers), so
they are launched through a short-lived shell that backgrounds them in a new
session: the service is then nobody's child in our process tree, cannot be hit
by a terminal's Ctrl-C, and leaves no zombie or "still running" warning behind
in the launcher. Liveness is read from ``/proc`` rather than ``kill(pid, 0)``
because a dead service whose parent never reaps it (a container's PID 1) stays
a zombie that ``kill`` still reports as present.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of ``pidfile``, or None when absent or garbled."""
    try:
        first = pidfile.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, expect_in_cmdline: str | None = None) -> bool:
    """Whether ``pid`` is a running (non-zombie) process.

    ``expect_in_cmdline`` guards against pid reuse after a reboot or a crash: a
    stale pidfile may name an unrelated process that now holds that number.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself
    # contain spaces or parentheses; the last ')' ends it.
    state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
    if state in ("Z", "X"):
        return False
    if expect_in_cmdline is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return expect_in_cmdline in cmdline


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn_detached(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` in the background, detached from us; return its pid.

    stdout and stderr are appended to ``log_path``; stdin is /dev/null.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in argv)
    script = f"exec {command} </dev/null >>{shlex.quote(str(log_path))} 2>&1 &\necho $!\n"
    done = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=True,
    )
    return int(done.stdout.strip())


def terminate(pid: int, *, timeout: float = 15.0, expect_in_cmdline: str | None = None) -> bool:
    """SIGTERM ``pid`` and wait for it to go; SIGKILL after ``timeout``.

    Returns whether the process was running when we got to it.
    """
    if not pid_alive(pid, expect_in_cmdline):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    return True


def wait_until(
    probe: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    still_worth_waiting: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``probe`` until it returns True or ``timeout`` passes.

    ``still_worth_waiting`` cuts the wait short, e.g. when the server process
    has already died, so a crash is reported at once instead of after the
    full timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return True
        if time.monotonic() >= deadline:
            return False
        if still_worth_waiting is not None and not still_worth_waiting():
            # One last look: the server may have daemonised between the checks.
            return probe()
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so two callers never start the same server twice.

    Several pytest sessions and a developer's shell may run ``up`` at once
    against one ``.devstack``; without the lock both would see "not running"
    and race for the same port and data directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
