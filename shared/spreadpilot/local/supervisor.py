"""Start, watch and stop the child processes of ``local up`` and the demo.

Why it is built this way:

- Every child runs in its own session (so its own process group). A gunicorn
  master with its workers, or uvicorn with anything it forks, is then stopped
  as one unit with ``killpg``, and a terminal's Ctrl-C reaches only us: we
  decide the order in which things stop (the runner before the functions,
  the sidecar before the gateways it holds sessions to).
- Each child also gets ``PR_SET_PDEATHSIG``: if we are killed outright
  (SIGKILL, OOM) the kernel sends it SIGTERM, so no orphan keeps a port.
- The pgids are written to ``pids.json`` while running; a later start first
  stops any group a crashed predecessor left behind.
- Output goes to one log file per child under ``.devstack/local/`` and a
  failure names that file with its last lines, because "the sidecar did not
  start" is useless without the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spreadpilot.devstack.process import pid_alive, tail

#: Runs in the child before the component's own program (``python -I -S -c``):
#: asks the kernel to SIGTERM it when the supervisor dies, then execs the
#: component with the same pid. A parent that is already gone means exit.
_WITH_PARENT_DEATH_SIGNAL = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` behind the parent-death wrapper above.

    Why a wrapper and not ``preexec_fn``: a ``preexec_fn`` makes subprocess
    fork() the whole (multi-threaded) supervisor and run Python in the child
    before exec. The demo's runner holds gRPC (Pub/Sub) threads by then, and
    gRPC's fork handlers in such a child abort it ("epoll_wait error: Bad
    file descriptor", exit -6): once in several demo starts, ibsim died that
    way. Without ``preexec_fn`` subprocess uses vfork, which runs no fork
    handlers, and the wrapper sets the signal after exec, in a fresh process.
    """
    return [sys.executable, "-I", "-S", "-c", _WITH_PARENT_DEATH_SIGNAL, str(os.getpid()), *argv]


class ComponentFailed(RuntimeError):
    """A child did not become ready, or died while it should be running."""

    def __init__(self, name: str, reason: str, log_path: Path) -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        super().__init__(f"{name} {reason}; log: {log_path}")

    def details(self, lines: int = 15) -> str:
        """The message plus the last lines of the component's log."""
        return f"{self}\n--- last lines of {self.log_path} ---\n{tail(self.log_path, lines)}"


ReadyProbe = Callable[[], bool]


@dataclass
class ProcessSpec:
    """How to run one component."""

    name: str
    argv: Sequence[str]
    #: the child's whole environment; None inherits this process's. A given
    #: environment is used as it is (not merged over os.environ), so variables a
    #: caller removed on purpose (alert credentials in the demo) stay removed.
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    #: a line (substring) the child prints when ready, read from its log
    ready_line: str | None = None
    #: or a probe (port open, HTTP health) polled until True
    ready_probe: ReadyProbe | None = None
    ready_timeout: float = 60.0
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 8.0


@dataclass
class Child:
    """One running component."""

    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int
    started_at: float
    ready: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit status if the child has ended, else None."""
        return self.process.poll()

    def ready_line(self) -> str | None:
        """The first log line (since start) containing ``spec.ready_line``."""
        if self.spec.ready_line is None:
            return None
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if self.spec.ready_line in line:
                return line
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields[0] is the state, fields[2] the process group id
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Supervisor:
    """Owns every child it started; ``stop_all`` leaves none behind."""

    def __init__(self, log_dir: Path, *, state_file: str = "pids.json") -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._state = log_dir / state_file
        self.children: list[Child] = []

    # -- start -------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def reap_leftovers(self) -> list[int]:
        """Stop process groups a previous, crashed run recorded and left running."""
        try:
            recorded = json.loads(self._state.read_text())
        except (OSError, ValueError):
            return []
        stopped: list[int] = []
        for item in recorded if isinstance(recorded, list) else []:
            pgid = int(item.get("pgid", 0))
            marker = str(item.get("marker", ""))
            if pgid <= 1 or not pid_alive(pgid, marker or None):
                continue
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGKILL)
            stopped.append(pgid)
        self._state.unlink(missing_ok=True)
        return stopped

    def start(self, spec: ProcessSpec) -> Child:
        """Launch ``spec`` in its own process group, output appended to its log."""
        log_path = self.log_path(spec.name)
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n===== {stamp} starting {spec.name}: {' '.join(spec.argv)}\n".encode())
            offset = log.tell()
            base = os.environ if spec.env is None else spec.env
            env = {**base, "PYTHONUNBUFFERED": "1"}
            try:
                process = subprocess.Popen(
                    _with_parent_death_signal(spec.argv),
                    cwd=spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ComponentFailed(
                    spec.name, f"could not be launched ({exc})", log_path
                ) from exc
        child = Child(spec, process, log_path, offset, time.monotonic())
        self.children.append(child)
        self._write_state()
        return child

    def wait_ready(self, child: Child, *, poll: float = 0.05) -> None:
        """Block until ``child`` is ready; ``ComponentFailed`` if it dies or times out."""
        spec = child.spec
        deadline = child.started_at + spec.ready_timeout
        while True:
            status = child.exited()
            if status is not None:
                raise ComponentFailed(
                    child.name, f"exited with status {status} while starting", child.log_path
                )
            if self._is_ready(child):
                child.ready = True
                return
            if time.monotonic() >= deadline:
                raise ComponentFailed(
                    child.name, f"not ready after {spec.ready_timeout:.0f}s", child.log_path
                )
            time.sleep(poll)

    def wait_all_ready(self, children: Sequence[Child]) -> None:
        """Wait for several children started together (they come up in parallel)."""
        pending = list(children)
        while pending:
            for child in list(pending):
                status = child.exited()
                if status is not None:
                    raise ComponentFailed(
                        child.name, f"exited with status {status} while starting", child.log_path
                    )
                if self._is_ready(child):
                    child.ready = True
                    pending.remove(child)
                elif time.monotonic() >= child.started_at + child.spec.ready_timeout:
                    raise ComponentFailed(
                        child.name,
                        f"not ready after {child.spec.ready_timeout:.0f}s",
                        child.log_path,
                    )
            if pending:
                time.sleep(0.05)

    @staticmethod
    def _is_ready(child: Child) -> bool:
        spec = child.spec
        if spec.ready_line is not None and child.ready_line() is None:
            return False
        if spec.ready_probe is not None:
            try:
                return bool(spec.ready_probe())
            except Exception:
                return False
        return True

    # -- watch ------------------------------------------------------------------

    def failed(self) -> list[ComponentFailed]:
        """Children that ended although nobody asked them to."""
        return [
            ComponentFailed(c.name, f"exited unexpectedly with status {c.exited()}", c.log_path)
            for c in self.children
            if c.exited() is not None
        ]

    # -- stop -------------------------------------------------------------------

    def stop(self, child: Child) -> int | None:
        """Stop one child's whole process group; returns its exit status."""
        pgid = child.pid
        if child.exited() is None:
            _signal_group(pgid, child.spec.stop_signal)
            try:
                child.process.wait(timeout=child.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=5)
        # The leader is gone; anything it forked into the group goes too.
        deadline = time.monotonic() + 3.0
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(pgid):
            _signal_group(pgid, signal.SIGKILL)
            # SIGKILL is delivered asynchronously: return once the group is
            # really gone, so "nothing left behind" holds when stop returns.
            deadline = time.monotonic() + 5.0
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
        if child in self.children:
            self.children.remove(child)
        self._write_state()
        return child.process.returncode

    def stop_all(self) -> dict[str, int | None]:
        """Stop every child, last started first (dependants before what they use)."""
        statuses: dict[str, int | None] = {}
        for child in reversed(list(self.children)):
            statuses[child.name] = self.stop(child)
        self._state.unlink(missing_ok=True)
        return statuses

    def leftover_pids(self, pgids: Sequence[int]) -> list[int]:
        """Pids still alive in any of ``pgids`` (tests assert this is empty)."""
        return [pid for pgid in pgids for pid in group_members(pgid)]

    def _write_state(self) -> None:
        data = [
            {"name": c.name, "pgid": c.pid, "marker": Path(c.spec.argv[0]).name}
            for c in self.children
        ]
        if data:
            self._state.write_text(json.dumps(data))
        else:
            self._state.unlink(missing_ok=True)
