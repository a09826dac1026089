"""The functions' source archive and the sidecar image recipe."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from .codemap import ROOT, entry_points


def test_functions_archive_has_the_runtime_layout_and_every_entry_point(tmp_path: Path) -> None:
    archive = tmp_path / "functions-source.zip"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "package_functions.sh"), str(archive)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        requirements = zf.read("requirements.txt").decode()
        zf.extractall(tmp_path / "src")
    assert {"main.py", "functions/main.py", "spreadpilot/secrets.py", "schedule.yaml"} <= names
    assert not any("__pycache__" in n or n.startswith(("tests/", "sidecar/")) for n in names)
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", requirements, re.MULTILINE))
    assert "functions-framework" in pinned and "google-cloud-secret-manager" in pinned
    assert "pytest" not in pinned and "ruff" not in pinned  # no dev tools
    assert "--hash=sha256:" in requirements
    # The root main.py exposes every target, importing only from the archive.
    targets = sorted(entry_points(ROOT / "functions" / "main.py"))
    probe = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, '.'); import main, spreadpilot; "
            "assert spreadpilot.__file__.startswith(sys.path[0]) or 'src' in spreadpilot.__file__; "
            f"print(all(callable(getattr(main, n)) for n in {targets!r}))",
        ],
        cwd=tmp_path / "src",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.stdout.strip() == "True", probe.stdout + probe.stderr
    # Packaging twice gives the same bytes, so Terraform redeploys only on change.
    again = tmp_path / "again.zip"
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "package_functions.sh"), str(again)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert again.read_bytes() == archive.read_bytes()


def test_sidecar_dockerfile_runs_the_sidecar_unprivileged_from_the_lock_file() -> None:
    text = (ROOT / "sidecar" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert "uv sync --frozen --no-dev" in text
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 8001$", text, re.MULTILINE)
    # The VM starts the image with only the sidecar's options as arguments.
    assert re.search(r'^ENTRYPOINT \[".*spreadpilot", "sidecar"\]$', text, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".devstack", ".git", "tests", "terraform"} <= set(ignored)
