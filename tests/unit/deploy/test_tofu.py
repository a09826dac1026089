"""OpenTofu checks with a real ``tofu``, built from tools/opentofu when missing.

- ``tofu fmt -check``: the configuration is canonically formatted.
- The locals that turn schedule.yaml into Cloud Scheduler jobs and push
  subscriptions are evaluated by the real HCL engine (a provider-free copy of
  locals.tf and variables.tf, applied to a local state), so a typo in a
  ``for`` expression or a table key Terraform cannot read fails here rather
  than at deploy time.

These never skip: a skipped formatting check on CI is a check nobody runs.
The binary comes from ``spreadpilot.devstack.ensure_binary("tofu")`` (the
checkout's .devstack/bin, else the per-user binary cache, else a ``go build``
of the pinned module: about five minutes once per machine and pin). If that
build fails the tests fail with the end of the build log.

A full ``tofu validate`` needs the Google provider, which cannot be installed
here; the deployment pipeline's ``terraform plan`` is that check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from spreadpilot.devstack import DevstackError, ensure_binary

from .codemap import ROOT
from .terraform_model import TF_DIR

# Setup time counts towards pytest-timeout, and a cold build of OpenTofu takes
# minutes; the build itself gives up after BUILD_TIMEOUT_SECONDS.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def tofu() -> str:
    """The ``tofu`` executable, built once per machine and pin; a failed build fails."""
    try:
        return str(ensure_binary("tofu"))
    except DevstackError as err:
        failure = str(err)
    # Outside the except block, so the report is the build log, not a traceback chain.
    pytest.fail(f"cannot build tofu from tools/opentofu:\n{failure}", pytrace=False)


def _run(tofu: str, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": os.devnull,
        "TF_IN_AUTOMATION": "1",
        "HOME": str(home),
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        [tofu, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_tofu_is_the_pinned_release(tofu: str, tmp_path: Path) -> None:
    done = _run(tofu, ["version", "-json"], ROOT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    go_mod = (ROOT / "tools" / "opentofu" / "go.mod").read_text()
    pinned = re.search(r"^\s*github\.com/opentofu/opentofu v(\S+)", go_mod, re.MULTILINE)
    assert pinned is not None
    # A release build (no "-dev" suffix) of the version go.mod requires.
    assert json.loads(done.stdout)["terraform_version"] == pinned.group(1)


def test_terraform_is_fmt_clean(tofu: str, tmp_path: Path) -> None:
    done = _run(tofu, ["fmt", "-check", "-recursive", "-diff", str(TF_DIR)], ROOT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schedule_locals_evaluate_with_the_real_engine(tofu: str, tmp_path: Path) -> None:
    module = tmp_path / "terraform"
    module.mkdir()
    shutil.copy(TF_DIR / "locals.tf", module)
    shutil.copy(TF_DIR / "variables.tf", module)
    shutil.copy(ROOT / "schedule.yaml", tmp_path / "schedule.yaml")
    (module / "probe.tf").write_text(
        """
output "scheduled_jobs" { value = local.scheduled_jobs }
output "topic_jobs" { value = local.topic_jobs }
output "functions" { value = keys(local.functions) }
output "function_secret_grants" { value = local.function_secret_grants }
output "gateway_secrets" { value = keys(local.gateway_secrets) }
""",
        encoding="utf-8",
    )
    home = tmp_path / "home"
    home.mkdir()
    init = _run(tofu, ["init", "-input=false", "-no-color"], module, home)
    assert init.returncode == 0, init.stdout + init.stderr
    apply = _run(
        tofu,
        [
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            "-var=project_id=probe-project",
            "-var=environment=dev",
            '-var=followers={"follower123"={}}',
        ],
        module,
        home,
    )
    assert apply.returncode == 0, apply.stdout + apply.stderr
    out = _run(tofu, ["output", "-json"], module, home)
    assert out.returncode == 0, out.stderr
    values = {k: v["value"] for k, v in json.loads(out.stdout).items()}

    from spreadpilot.schedule import load_schedule

    table = load_schedule(ROOT / "schedule.yaml")
    assert set(values["scheduled_jobs"]) == {j.name for j in table.scheduled}
    for job in table.scheduled:
        evaluated = values["scheduled_jobs"][job.name]
        assert evaluated["schedule"] == job.schedule
        assert evaluated["target"] == job.target
        assert evaluated["time_zone"] == job.timezone == "America/New_York"
        assert evaluated["target"] in values["functions"]
    assert {name: row["topic"] for name, row in values["topic_jobs"].items()} == {
        j.name: j.topic for j in table.topic_triggered
    }
    assert "ib-follower123-password" in values["gateway_secrets"]
    assert all(
        g["function"] in values["functions"] for g in values["function_secret_grants"].values()
    )
