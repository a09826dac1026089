"""The local-stack plumbing, checked without starting any real server.

Every test points SP_DEVSTACK_DIR at a temporary directory and uses ports
that nothing of ours listens on, so a developer's running stack is untouched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from spreadpilot.cli import main
from spreadpilot.devstack import (
    DevstackError,
    ServiceEnv,
    configured_port,
    ensure_services,
    install,
    layout,
    process,
    service_env,
    services_status,
    stop_services,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scratch_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, empty .devstack on free ports."""
    root = tmp_path / "devstack"
    monkeypatch.setenv("SP_DEVSTACK_DIR", str(root))
    for var in ("SP_PG_PORT", "SP_REDIS_PORT", "SP_MONGO_PORT", "SP_PUBSUB_PORT"):
        monkeypatch.setenv(var, str(_free_port()))
    yield root
    stop_services()


# ---------------------------------------------------------------- configuration


def test_ports_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SP_PG_PORT", raising=False)
    assert configured_port("postgres") == 55432
    monkeypatch.setenv("SP_PG_PORT", "61000")
    assert configured_port("postgres") == 61000
    monkeypatch.setenv("SP_PG_PORT", "post")
    with pytest.raises(DevstackError, match="SP_PG_PORT"):
        configured_port("postgres")
    monkeypatch.setenv("SP_PG_PORT", "70000")
    with pytest.raises(DevstackError, match="out of range"):
        configured_port("postgres")


def test_env_exports_evaluate_in_a_shell() -> None:
    env = ServiceEnv(pg_port=1, redis_port=2, mongo_port=3, pubsub_port=4)
    script = "\n".join(env.export_lines()) + '\nprintf "%s|%s|%s|%s|%s" '
    script += (
        '"$PNL_DATABASE_URL" "$REDIS_URL" "$MONGO_URI" "$PUBSUB_EMULATOR_HOST" "$PUBSUB_PROJECT_ID"'
    )
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split("|") == [
        "postgresql://spreadpilot:spreadpilot@127.0.0.1:1/spreadpilot",
        "redis://127.0.0.1:2/0",
        "mongodb://127.0.0.1:3/spreadpilot",
        "127.0.0.1:4",
        "spreadpilot-local",
    ]


def test_layout_honours_override(scratch_stack: Path) -> None:
    lay = layout()
    assert lay.root == scratch_stack
    assert lay.bin_dir == scratch_stack / "bin"
    assert (lay.tools_dir / "go.mod").is_file()


# ---------------------------------------------------------------- processes


def test_spawned_process_is_detached_and_terminated(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    pid = process.spawn_detached(["/bin/sh", "-c", "echo hello; exec sleep 30"], log_path=log)
    try:
        assert process.pid_alive(pid)
        # Not our child: it will outlive us, and we will never have to reap it.
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert process.wait_until(lambda: "hello" in log.read_text(), timeout=5)
        assert process.pid_alive(pid, expect_in_cmdline="sleep 30")
        assert not process.pid_alive(pid, expect_in_cmdline="redis-server")
    finally:
        assert process.terminate(pid, timeout=5)
    assert not process.pid_alive(pid)


def test_pidfile_reading(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert process.read_pid(pidfile) is None
    pidfile.write_text("garbage\n")
    assert process.read_pid(pidfile) is None
    pidfile.write_text("1234\n/some/dir\n")
    assert process.read_pid(pidfile) == 1234


def test_log_tail_keeps_the_end(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no log" in process.tail(tmp_path / "missing.log")


# ---------------------------------------------------------------- Go build stamp


def test_fingerprint_follows_go_sources(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    shutil.copytree(layout().tools_dir, tools, ignore=shutil.ignore_patterns("*_test.go"))
    before = install.tools_fingerprint(tools)
    assert install.tools_fingerprint(tools) == before
    main_go = tools / "cmd" / "pubsub-fake" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// changed\n")
    assert install.tools_fingerprint(tools) != before


# ---------------------------------------------------------------- failures are explained


def test_port_taken_by_a_stranger_is_reported(
    scratch_stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        monkeypatch.setenv("SP_PUBSUB_PORT", str(port))
        with pytest.raises(DevstackError) as err:
            ensure_services(["pubsub"])
    message = str(err.value)
    assert message.startswith("pubsub:")
    assert str(port) in message
    assert "SP_PUBSUB_PORT" in message


def _fake_go_binaries(root: Path, script: str) -> None:
    """Stand-in executables that look current, so no Go build runs."""
    lay = layout()
    lay.bin_dir.mkdir(parents=True)
    for name in install.GO_BINARIES:
        exe = lay.bin_dir / name
        exe.write_text(script)
        exe.chmod(0o755)
    (lay.bin_dir / ".tools-stamp").write_text(install.tools_fingerprint(lay.tools_dir))
    assert install.go_binaries_current(lay)


def test_crash_at_start_names_service_and_log(scratch_stack: Path) -> None:
    _fake_go_binaries(scratch_stack, "#!/bin/sh\necho 'boom: cannot open data dir' >&2\nexit 1\n")
    started = time.monotonic()
    with pytest.raises(DevstackError) as err:
        ensure_services(["ferretdb"], timeout=20)
    # The crash is noticed at once, not after the readiness timeout.
    assert time.monotonic() - started < 10
    message = str(err.value)
    log = scratch_stack / "ferretdb" / "ferretdb.log"
    assert message.startswith("ferretdb:")
    assert f"log: {log}" in message
    assert "boom: cannot open data dir" in message


def test_status_and_down_when_nothing_runs(scratch_stack: Path) -> None:
    rows = services_status()
    assert [r.name for r in rows] == ["postgres", "redis", "ferretdb", "pubsub"]
    assert not any(r.running for r in rows)
    assert [r.port for r in rows] == [
        service_env().pg_port,
        service_env().redis_port,
        service_env().mongo_port,
        service_env().pubsub_port,
    ]
    assert stop_services() == []


# ---------------------------------------------------------------- CLI


def test_cli_env_status_and_help(scratch_stack: Path) -> None:
    runner = CliRunner()
    env = runner.invoke(main, ["services", "env"])
    assert env.exit_code == 0
    assert f"export REDIS_URL=redis://127.0.0.1:{service_env().redis_port}/0" in env.output

    status = runner.invoke(main, ["services", "status"])
    assert status.exit_code == 3
    assert str(service_env().mongo_port) in status.output
    assert "down" in status.output

    assert "services" in runner.invoke(main, ["--help"]).output
    bad = runner.invoke(main, ["services", "up", "mysql"])
    assert bad.exit_code != 0
