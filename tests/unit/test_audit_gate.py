"""The dependency-audit gate fails on fixable vulnerabilities only, and never
mistakes an unanswered audit for a clean one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

GATE = Path(__file__).resolve().parents[2] / "scripts" / "audit_gate.py"


def _gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_gate", GATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gate = _gate()


def _run(tmp_path: Path, report: dict[str, Any], *args: str) -> int:
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    return int(gate.main([str(path), *args]))


def _dep(name: str, version: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": version, "vulns": list(vulns)}


def _vuln(vuln_id: str, *fixes: str) -> dict[str, Any]:
    return {"id": vuln_id, "fix_versions": list(fixes), "aliases": [], "description": "x"}


@pytest.fixture(autouse=True)
def _no_env_strictness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_REQUIRE_COMPLETE", raising=False)


def test_a_vulnerability_with_a_fix_fails(tmp_path: Path, capsys: Any) -> None:
    report = {
        "dependencies": [_dep("clean", "1.0"), _dep("jinja2", "3.1.2", _vuln("GHSA-1", "3.1.3"))],
        "fixes": [],
    }
    assert _run(tmp_path, report) == 1
    assert "jinja2 3.1.2: GHSA-1; fixed in: 3.1.3" in capsys.readouterr().out


def test_a_vulnerability_without_a_fix_is_reported_but_passes(tmp_path: Path, capsys: Any) -> None:
    report = {"dependencies": [_dep("pkg", "2.0", _vuln("PYSEC-9"))], "fixes": []}
    assert _run(tmp_path, report) == 0
    assert "not yet fixable" in capsys.readouterr().out


def test_unaudited_packages_warn_and_fail_only_when_completeness_is_required(
    tmp_path: Path, capsys: Any
) -> None:
    report = {
        "dependencies": [
            {"name": "a", "skip_reason": "Dependency not found on PyPI and could not be audited"}
        ],
        "fixes": [],
    }
    assert _run(tmp_path, report) == 0
    captured = capsys.readouterr()
    assert "could NOT be audited" in captured.err
    assert "WITHOUT auditing" in captured.out
    assert _run(tmp_path, report, "--require-complete") == 3


def test_fixable_beats_incomplete(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {"name": "a", "skip_reason": "unreachable"},
            _dep("b", "1.0", _vuln("GHSA-2", "1.1")),
        ]
    }
    assert _run(tmp_path, report, "--require-complete") == 1


def test_an_unreadable_report_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text("not json", encoding="utf-8")
    assert gate.main([str(path)]) == 2
