"""No secret in any log line of a full (time-compressed) demo run.

The demo runs for real, shortened like tests/e2e/test_demo_day.py (a faster
clock, names of its own). Distinctive fake secrets are put in the
environment first. While it runs, the children's actual environments are
read from ``/proc`` (their process groups are in ``pids.json``), so the test
knows the sidecar token the demo generated and the database URLs it handed
out, and can check that those secrets really reached the children: a scan for
values no process ever had would prove nothing. Afterwards every file under
the demo's log and report directories, and its console output, is scanned.

Telegram and SendGrid credentials are stripped from the children by design
(the demo never messages people), so for those the scan covers the demo's own
process only; the sidecar token, the database credentials and the Sheets API
key are present in the children.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scan_names import drop_names, make_names
from spreadpilot.devstack import PG_PASSWORD, PG_USER

SPEED = 300.0
FAKE = {
    "TELEGRAM_BOT_TOKEN": "777000:SECRET-telegram-Zq8v3Kp",
    "SENDGRID_API_KEY": "SG.SECRET-sendgrid-Wm4Jx7Qd",
    "GOOGLE_SHEETS_API_KEY": "AIzaSECRET-sheets-Hn2Rb6Tc",
}
# The local PostgreSQL role's password is fixed by the devstack; what must never
# appear is the URL form that carries it.
DB_CREDENTIALS = f"{PG_USER}:{PG_PASSWORD}@"


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class ChildEnvWatcher:
    """Collects the environments of the demo's children while they run."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.environments: dict[int, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ChildEnvWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                groups = json.loads((self.log_dir / "pids.json").read_text())
            except (OSError, ValueError):
                groups = []
            for item in groups:
                for pid in _group_pids(int(item.get("pgid", 0))):
                    if pid not in self.environments:
                        env = _environ(pid)
                        if env:
                            env["/proc cmdline"] = _cmdline(pid)
                            self.environments[pid] = env
            time.sleep(0.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, devstack: Any) -> Iterator[dict[str, Any]]:
    """One shortened demo run with fake secrets in the environment, and what it left."""
    from spreadpilot.demo.run import DemoOptions, run_demo

    base = tmp_path_factory.mktemp("secret-scan")
    names = make_names(devstack)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE.items():
            mp.setenv(key, value)
        options = DemoOptions(
            seed=7,
            speed=SPEED,
            report_dir=base / "report",
            log_dir=base / "logs",
            database=names["database"],
            redis_db=names["redis_db"],
            pubsub_project=names["project"],
            progress=False,
        )
        assert options.log_dir is not None
        options.log_dir.mkdir(parents=True)
        watcher = ChildEnvWatcher(options.log_dir).start()
        out = io.StringIO()
        try:
            result = run_demo(options, out=out)
        finally:
            watcher.stop()
    try:
        yield {
            "result": result,
            "options": options,
            "output": out.getvalue(),
            "children": list(watcher.environments.values()),
        }
    finally:
        drop_names(devstack, names)


def test_no_secret_in_any_log_line_of_a_demo_run(demo: dict[str, Any]) -> None:
    result, options, output = demo["result"], demo["options"], demo["output"]
    assert result.ok, output + "\n".join(result.problems)
    children: list[dict[str, str]] = demo["children"]
    assert children, "the children's environments were read while they ran"
    secrets: dict[str, str] = dict(FAKE)
    tokens = {env["SIDECAR_TOKEN"] for env in children if env.get("SIDECAR_TOKEN")}
    assert len(tokens) == 1, "every child got the one sidecar token"
    secrets["SIDECAR_TOKEN"] = tokens.pop()
    secrets["database credentials"] = DB_CREDENTIALS
    # The scan means something: these secrets were really in the children's hands.
    assert any(DB_CREDENTIALS in env.get("PNL_DATABASE_URL", "") for env in children)
    assert any(
        env.get("GOOGLE_SHEETS_API_KEY") == FAKE["GOOGLE_SHEETS_API_KEY"] for env in children
    )

    scanned: list[Path] = []
    leaks: list[str] = []
    texts = {"console output": output}
    for base in (options.log_dir, options.report_dir):
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            scanned.append(path)
            texts[str(path)] = path.read_bytes().decode(errors="replace")
    for where, text in texts.items():
        for number, line in enumerate(text.splitlines(), 1):
            for label, value in secrets.items():
                if value in line:
                    leaks.append(f"{where}:{number}: {label}")
    logs = [p for p in scanned if p.suffix in (".log", ".jsonl")]
    assert len(logs) >= 4, f"the demo wrote its logs where expected: {scanned}"
    assert sum(len(t) for t in texts.values()) > 100_000, "there was plenty to scan"
    assert not leaks, "\n".join(leaks)


def test_demo_children_do_not_get_the_alert_credentials(demo: dict[str, Any]) -> None:
    given = [
        (env["/proc cmdline"][:60], key)
        for env in demo["children"]
        for key in ("TELEGRAM_BOT_TOKEN", "SENDGRID_API_KEY")
        if env.get(key) == FAKE[key]
    ]
    assert not given, f"the demo strips these from its children: {given}"
