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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from spreadpilot.cli import main
from spreadpilot.devstack import (
    BIN_CACHE_ENV,
    PORT_VARIABLES,
    DevstackError,
    ServiceEnv,
    bin_cache_dir,
    configured_port,
    ensure_binary,
    ensure_services,
    install,
    layout,
    process,
    service_env,
    services,
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
    for var in PORT_VARIABLES:
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


# ---------------------------------------------------------------- Go builds


def test_fingerprint_follows_go_sources(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    shutil.copytree(layout().tools_dir, tools, ignore=shutil.ignore_patterns("*_test.go"))
    before = install.tools_fingerprint(tools)
    assert install.tools_fingerprint(tools) == before
    main_go = tools / "cmd" / "pubsub-fake" / "main.go"
    main_go.write_text(main_go.read_text() + "\n// changed\n")
    changed = install.tools_fingerprint(tools)
    assert changed != before
    # Nested modules are separate builds: bumping OpenTofu must not rebuild FerretDB.
    (tools / "opentofu" / "go.sum").write_text("bumped\n")
    (tools / "opentofu" / "tools.go").write_text("package tools\n")
    assert install.tools_fingerprint(tools) == changed


def test_services_up_builds_only_the_servers_binaries() -> None:
    """OpenBao and OpenTofu take minutes cold: only their tests may build them."""
    go_services = [c for c in services._CLASSES.values() if issubclass(c, services._GoService)]
    assert {c.binary for c in go_services} == {"ferretdb", "pubsub-fake"}
    assert {"bao", "tofu"} <= set(install.GO_BINARIES)
    for spec in install.GO_BINARIES.values():
        assert (layout().repo_root / spec.module / "go.sum").is_file(), spec


def test_bin_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(BIN_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert bin_cache_dir() == tmp_path / "spreadpilot" / "bin"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert bin_cache_dir() == Path.home() / ".cache" / "spreadpilot" / "bin"
    monkeypatch.setenv(BIN_CACHE_ENV, str(tmp_path / "elsewhere"))
    assert bin_cache_dir() == tmp_path / "elsewhere"


def _hello(msg: str) -> str:
    return f'package main\n\nimport "fmt"\n\nfunc main() {{ fmt.Println("{msg}") }}\n'


@pytest.fixture
def hello_module(
    tmp_path: Path, scratch_stack: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A one-file Go module registered as binary ``hello``, with an empty binary cache."""
    module = tmp_path / "hello"
    module.mkdir()
    (module / "go.mod").write_text("module example.com/hello\n\ngo 1.24\n")
    (module / "main.go").write_text(_hello("v1"))
    monkeypatch.setenv(BIN_CACHE_ENV, str(tmp_path / "bincache"))
    spec = install.GoBinary("hello", str(module), ".", "the hello fixture")
    monkeypatch.setitem(install.GO_BINARIES, "hello", spec)
    yield module


def _no_go(purpose: str = "") -> str:
    raise AssertionError(f"go was invoked for {purpose}")


def _run(exe: Path) -> str:
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip()


def test_ensure_binary_builds_once_then_reuses_the_user_cache(
    hello_module: Path, scratch_stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages: list[str] = []
    exe = ensure_binary("hello", report=messages.append)
    assert exe == scratch_stack / "bin" / "hello"
    assert _run(exe) == "v1"
    assert any("built in" in m for m in messages)
    cached = install.cached_binary("hello")
    assert cached.parent == tmp_path / "bincache"
    assert os.path.samefile(cached, exe)  # a hard link, not a second copy

    # Warm checkout: no go, no lock, nothing reported.
    real_find_go = install.find_go
    monkeypatch.setattr(install, "find_go", _no_go)
    messages.clear()
    assert ensure_binary("hello", report=messages.append) == exe
    assert messages == []

    # A fresh clone (empty .devstack) on the same machine: linked from the cache.
    fresh = tmp_path / "fresh-devstack"
    monkeypatch.setenv("SP_DEVSTACK_DIR", str(fresh))
    assert _run(ensure_binary("hello", report=messages.append)) == "v1"
    assert messages == [f"the hello fixture: reusing {cached}"]

    # Editing the module's sources makes both copies stale.
    monkeypatch.setattr(install, "find_go", real_find_go)
    monkeypatch.setenv("SP_DEVSTACK_DIR", str(scratch_stack))
    (hello_module / "main.go").write_text(_hello("v2"))
    assert not install.binary_current("hello")
    assert _run(ensure_binary("hello")) == "v2"
    assert install.cached_binary("hello") != cached
    assert cached.is_file()  # the previous pin stays cached for a branch switch


def test_a_failed_build_raises_with_the_log_tail(hello_module: Path, scratch_stack: Path) -> None:
    (hello_module / "main.go").write_text("package main\n\nfunc main() { undefinedThing() }\n")
    with pytest.raises(DevstackError) as err:
        ensure_binary("hello")
    message = str(err.value)
    assert message.startswith("the hello fixture: `go build .`")
    assert "undefined: undefinedThing" in message
    assert f"log: {scratch_stack / 'bin' / 'hello.build.log'}" in message
    assert not (scratch_stack / "bin" / "hello").exists()
    assert not any(bin_cache_dir().glob("hello-*"))


def test_concurrent_callers_build_once(hello_module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[str] = []
    real_build = install._go_build

    def counting_build(spec: install.GoBinary, *args: Any) -> None:
        builds.append(spec.name)
        time.sleep(0.5)  # let the other caller reach the lock while we build
        real_build(spec, *args)

    monkeypatch.setattr(install, "_go_build", counting_build)
    lay = layout()
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: ensure_binary("hello", lay=lay), range(2)))
    assert builds == ["hello"]
    assert paths[0] == paths[1]
    assert _run(paths[0]) == "v1"


def test_prune_keeps_the_most_recently_used(tmp_path: Path) -> None:
    now = time.time()
    entries = []
    for age in range(5):
        entry = tmp_path / f"tofu-{age:016x}"
        entry.write_text("x")
        os.utime(entry, (now - age * 60, now - age * 60))
        entries.append(entry)
    other = tmp_path / "tofu-extra-0000000000000000"
    other.write_text("x")
    current = tmp_path / "tofu-ffffffffffffffff"
    current.write_text("x")
    install._prune(tmp_path, "tofu", keep=current)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([current.name, entries[0].name, entries[1].name, other.name])


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
    for name in ("ferretdb", "pubsub-fake"):
        exe = lay.bin_dir / name
        exe.write_text(script)
        exe.chmod(0o755)
        install.write_stamp(name, lay)
        assert install.binary_current(name, lay)


def test_crash_at_start_names_service_and_log(scratch_stack: Path) -> None:
    # The Pub/Sub fake: a Go-built server with no other server under it (FerretDB
    # starts its PostgreSQL cluster first, which a scratch directory cannot host).
    _fake_go_binaries(scratch_stack, "#!/bin/sh\necho 'boom: cannot open data dir' >&2\nexit 1\n")
    started = time.monotonic()
    with pytest.raises(DevstackError) as err:
        ensure_services(["pubsub"], timeout=20)
    # The crash is noticed at once, not after the readiness timeout.
    assert time.monotonic() - started < 10
    message = str(err.value)
    log = scratch_stack / "pubsub" / "pubsub.log"
    assert message.startswith("pubsub:")
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
