"""The process supervisor on its own: failures name the log, stops leave nothing behind.

Fast (no services): these are the guarantees ``local up`` and the demo rely
on when a component crashes or a person presses Ctrl-C.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from spreadpilot.local.supervisor import ComponentFailed, ProcessSpec, Supervisor, group_members


def test_a_component_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    child = sup.start(
        ProcessSpec(
            "broken",
            [sys.executable, "-c", "import sys; print('config is wrong'); sys.exit(3)"],
            ready_line="READY",
            ready_timeout=20,
        )
    )
    with pytest.raises(ComponentFailed) as caught:
        sup.wait_ready(child)
    assert caught.value.name == "broken"
    assert "status 3" in str(caught.value)
    assert str(tmp_path / "broken.log") in str(caught.value)
    assert "config is wrong" in caught.value.details()
    sup.stop_all()


def test_stop_all_kills_the_whole_process_group(tmp_path: Path) -> None:
    # A parent that forks a grandchild ignoring SIGTERM, like a server's worker.
    script = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(600)\n"
        "print('READY', flush=True)\n"
        "time.sleep(600)\n"
    )
    sup = Supervisor(tmp_path)
    child = sup.start(
        ProcessSpec("parent", [sys.executable, "-c", script], ready_line="READY", stop_timeout=2)
    )
    sup.wait_ready(child)
    pgid = child.pid
    deadline = time.monotonic() + 5
    while len(group_members(pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(pgid)) == 2
    assert (tmp_path / "pids.json").exists()
    sup.stop_all()
    assert group_members(pgid) == []
    assert not (tmp_path / "pids.json").exists()


def test_leftovers_of_a_crashed_run_are_reaped(tmp_path: Path) -> None:
    first = Supervisor(tmp_path)
    child = first.start(
        ProcessSpec(
            "sleeper",
            [sys.executable, "-c", "print('READY', flush=True); import time; time.sleep(600)"],
            ready_line="READY",
        )
    )
    first.wait_ready(child)
    # The owner "crashes" (never calls stop_all); the next run finds pids.json.
    second = Supervisor(tmp_path)
    assert second.reap_leftovers() == [child.pid]
    child.process.wait(timeout=10)
    assert group_members(child.pid) == []


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL the supervisor itself: the kernel's parent-death signal still
    stops its child, so no orphan keeps a port."""
    program = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from spreadpilot.local.supervisor import ProcessSpec, Supervisor\n"
        "sup = Supervisor(Path(sys.argv[1]))\n"
        "child = sup.start(ProcessSpec('sleeper', [sys.executable, '-c', "
        "\"print('READY', flush=True); import time; time.sleep(600)\"], ready_line='READY'))\n"
        "sup.wait_ready(child)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert supervisor.stdout is not None
        child = int(supervisor.stdout.readline())
        assert group_members(child) == [child], "the child runs, as its own group"
        supervisor.kill()
        supervisor.wait(10)
        deadline = time.monotonic() + 10
        while group_members(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(child) == []
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
