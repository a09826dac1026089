"""cloudbuild.yaml: test first, then build and push, package, plan; apply only on request."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .codemap import ROOT

CLOUDBUILD = ROOT / "cloudbuild.yaml"


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return dict(yaml.safe_load(CLOUDBUILD.read_text(encoding="utf-8")))


def _script(step: dict[str, Any]) -> str:
    return " ".join([str(step.get("entrypoint", "")), *map(str, step.get("args", []))])


def _index(steps: list[dict[str, Any]], pattern: str) -> int:
    for index, step in enumerate(steps):
        if re.search(pattern, _script(step)):
            return index
    raise AssertionError(f"no step matches {pattern!r}")


def _readme_test_command() -> str:
    """The command the README tells a user runs the tests with."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^(make \w+)\s+#.*\btests?\b", readme, re.MULTILINE)
    assert match, "README names no test command"
    return match.group(1)


def test_test_step_runs_the_readme_test_command_first(build: dict[str, Any]) -> None:
    steps = build["steps"]
    command = _readme_test_command()
    assert command == "make test"
    first = steps[0]
    assert first["id"] == "test"
    assert re.search(rf"(^|\s){re.escape(command)}(\s|$)", _script(first))


def test_steps_run_in_order_test_build_push_package_init_plan_apply(
    build: dict[str, Any],
) -> None:
    steps = build["steps"]
    order = [
        _index(steps, r"make test"),
        _index(steps, r"\bbuild\b.*sidecar/Dockerfile"),
        _index(steps, r"\bpush\b"),
        _index(steps, r"package_functions"),
        _index(steps, r"\binit\b.*backend-config"),
        _index(steps, r"\bplan\b"),
        _index(steps, r"terraform apply"),
    ]
    assert order == sorted(order), order
    # waitFor keeps the order when steps could run in parallel: nothing
    # after the tests starts before they pass.
    test_id = steps[0]["id"]
    for step in steps[1:]:
        waits = step.get("waitFor")
        assert waits and "-" not in waits, f"step {step['id']} does not wait"
    by_id = {s["id"]: s for s in steps}

    def ancestors(step_id: str) -> set[str]:
        found: set[str] = set()
        for parent in by_id[step_id].get("waitFor", []):
            found |= {parent, *ancestors(parent)}
        return found

    apply_id = steps[_index(steps, r"terraform apply")]["id"]
    plan_id = steps[_index(steps, r"\bplan\b")]["id"]
    push_id = steps[_index(steps, r"\bpush\b")]["id"]
    package_id = steps[_index(steps, r"package_functions")]["id"]
    assert {test_id, push_id, package_id, plan_id} <= ancestors(apply_id)


def test_apply_is_gated_by_the_apply_substitution(build: dict[str, Any]) -> None:
    steps = build["steps"]
    apply_step = steps[_index(steps, r"terraform apply")]
    script = _script(apply_step)
    assert re.search(r'if \[ "\$\{_APPLY\}" = "true" \]', script)
    assert build["substitutions"]["_APPLY"] == "false"
    # Apply uses the reviewed plan file, not a fresh plan.
    assert re.search(r"terraform apply -input=false tfplan", script)
    plan = steps[_index(steps, r"\bplan\b")]
    assert "-out=tfplan" in plan["args"]


def test_every_substitution_used_is_defined(build: dict[str, Any]) -> None:
    text = Path(CLOUDBUILD).read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", text))
    assert used <= set(build["substitutions"]), used - set(build["substitutions"])
