"""Terraform and the code agree: functions, schedule, topics, secrets, ingress, roles.

The expectations are derived from the code as it is (functions/main.py parsed
with ``ast``, schedule.yaml through its own loader, secret and topic use
found by reading the modules), so adding an entry point, a job, a topic or a
secret read without its Terraform counterpart fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from .codemap import ROOT, CodeMap, entry_points
from .terraform_model import (
    TF_DIR,
    Terraform,
    check_functions,
    check_no_primitive_roles,
    check_schedule,
    check_secrets,
    check_sidecar_ingress,
    check_topics,
    load_terraform,
    load_tfvars,
)

MAIN_PY = ROOT / "functions" / "main.py"
SCHEDULE = ROOT / "schedule.yaml"


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return load_terraform()


@pytest.fixture(scope="module")
def code() -> CodeMap:
    return CodeMap()


@pytest.fixture(scope="module")
def targets() -> dict[str, str]:
    if not MAIN_PY.is_file():
        pytest.skip("functions/main.py does not exist yet")
    found = entry_points(MAIN_PY)
    if not found:
        pytest.skip("functions/main.py has no functions-framework target yet")
    return found


@pytest.fixture(scope="module")
def schedule_rows() -> list[dict[str, Any]]:
    """The table through its own loader (validated), as plain rows."""
    if not SCHEDULE.is_file():
        pytest.skip("schedule.yaml does not exist yet")
    from spreadpilot.schedule import load_schedule

    table = load_schedule(SCHEDULE)
    return [
        {
            "name": job.name,
            "target": job.target,
            "schedule": job.schedule,
            "topic": job.topic,
            "timezone": job.timezone,
        }
        for job in table.jobs
    ]


def _settings_fields() -> dict[str, str]:
    from spreadpilot.secrets import CATALOGUE

    return {s.settings_field: s.name.value for s in CATALOGUE.values() if s.settings_field}


def _secret_ids(names: set[str]) -> set[str]:
    from spreadpilot.secrets import CATALOGUE, SecretName

    return {CATALOGUE[SecretName(n)].secret_id for n in names}


def _function_secrets(code: CodeMap, targets: dict[str, str]) -> dict[str, set[str]]:
    fields = _settings_fields()
    return {
        fn: _secret_ids(code.secrets_read(code.reachable("functions.main", fn), fields))
        for fn in targets
    }


def _sidecar_secrets(code: CodeMap) -> set[str]:
    return _secret_ids(code.secrets_read(code.package_keys("sidecar"), _settings_fields()))


def _catalogue() -> dict[str, str]:
    from spreadpilot.secrets import CATALOGUE

    return {s.secret_id: s.name.value for s in CATALOGUE.values()}


# --- functions -------------------------------------------------------------------


def test_every_entry_point_has_a_function_and_every_function_an_entry_point(
    tf: Terraform, targets: dict[str, str]
) -> None:
    assert check_functions(tf, targets) == []


def test_a_function_without_entry_point_is_caught(tf: Terraform, targets: dict[str, str]) -> None:
    broken = copy.deepcopy(tf)
    broken.locals["functions"]["not_an_entry_point"] = {"secrets": [], "publishes": []}
    extra = dict(targets, forgotten_entry_point="http")
    problems = check_functions(broken, extra)
    assert any("not_an_entry_point" in p for p in problems)
    assert any("forgotten_entry_point" in p for p in problems)


# --- schedule --------------------------------------------------------------------


def test_scheduler_jobs_come_from_the_schedule_table_and_target_functions(
    tf: Terraform, schedule_rows: list[dict[str, Any]], targets: dict[str, str]
) -> None:
    assert check_schedule(tf, schedule_rows, targets) == []


def test_a_job_naming_a_missing_function_is_caught(
    tf: Terraform, schedule_rows: list[dict[str, Any]], targets: dict[str, str]
) -> None:
    rows = [
        *schedule_rows,
        {
            "name": "ghost",
            "target": "ghost_job",
            "schedule": "* * * * *",
            "topic": None,
            "timezone": "UTC",
        },
    ]
    problems = check_schedule(tf, rows, targets)
    assert any("ghost_job, no terraform function" in p for p in problems)
    assert any("not in America/New_York" in p for p in problems)


def test_schedule_yaml_is_read_by_terraform_as_plain_yaml() -> None:
    """Terraform's yamldecode sees the same rows: no YAML anchors or tags it lacks."""
    if not SCHEDULE.is_file():
        pytest.skip("schedule.yaml does not exist yet")
    text = SCHEDULE.read_text(encoding="utf-8")
    assert "&" not in text.replace("P&L", "") and "!!" not in text
    raw = yaml.safe_load(text)
    assert isinstance(raw["jobs"], list)
    for row in raw["jobs"]:
        assert ("schedule" in row) != ("topic" in row), row


# --- topics ----------------------------------------------------------------------


def test_every_topic_the_code_publishes_to_is_declared_and_granted(
    tf: Terraform, code: CodeMap, targets: dict[str, str]
) -> None:
    function_topics = {
        fn: code.topics_published(code.reachable("functions.main", fn)) for fn in targets
    }
    sidecar_topics = code.topics_published(code.package_keys("sidecar"))
    assert check_topics(tf, code.all_topics(), function_topics, sidecar_topics) == []


def test_an_undeclared_topic_is_caught(tf: Terraform) -> None:
    problems = check_topics(tf, {"signals", "orders"}, {}, set(tf.locals["sidecar_publishes"]))
    assert any("'orders'" in p for p in problems)


# --- secrets ---------------------------------------------------------------------


def test_every_secret_is_declared_and_granted_only_where_read(
    tf: Terraform, code: CodeMap, targets: dict[str, str]
) -> None:
    problems = check_secrets(
        tf, _catalogue(), _function_secrets(code, targets), _sidecar_secrets(code)
    )
    assert problems == []


def test_a_secret_granted_but_not_read_or_read_but_not_granted_is_caught(
    tf: Terraform, code: CodeMap, targets: dict[str, str]
) -> None:
    fn = next(iter(targets))
    needs = dict(_function_secrets(code, targets), **{fn: {"telegram-bot-token"}})
    broken = copy.deepcopy(tf)
    broken.locals["functions"][fn]["secrets"] = ["pnl-database-url"]
    problems = check_secrets(broken, _catalogue(), needs, _sidecar_secrets(code))
    assert f"{fn} reads secret telegram-bot-token, terraform does not grant it" in problems
    assert f"{fn} is granted secret pnl-database-url its code never reads" in problems


def test_secret_use_is_found_through_the_wiring(code: CodeMap) -> None:
    """The analysis follows entry point -> runtime factory -> adapter settings."""
    fields = _settings_fields()
    everything = code.secrets_read(
        {key for name in code.modules for key in code.reachable(name, None)}, fields
    )
    assert "MONGO_URI" in everything


# --- sidecar ingress and roles ------------------------------------------------------


def test_sidecar_has_no_public_ingress(tf: Terraform) -> None:
    assert check_sidecar_ingress(tf) == []


def test_an_open_firewall_or_external_ip_is_caught(tf: Terraform) -> None:
    broken = copy.deepcopy(tf)
    broken.resources[("google_compute_firewall", "sidecar_api")]["source_ranges"] = ["0.0.0.0/0"]
    vm = broken.resources[("google_compute_instance", "sidecar")]
    vm["network_interface"][0]["access_config"] = [{}]
    problems = check_sidecar_ingress(broken)
    assert any("open to the internet" in p for p in problems)
    assert any("external IP" in p for p in problems)


def test_no_service_account_has_a_primitive_role(tf: Terraform) -> None:
    assert check_no_primitive_roles(tf) == []
    broken = copy.deepcopy(tf)
    broken.resources[("google_project_iam_member", "x")] = {"role": "roles/editor"}
    assert check_no_primitive_roles(broken)


# --- environments and outputs --------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_example_tfvars_set_every_required_variable_and_nothing_unknown(
    tf: Terraform, env: str
) -> None:
    values = load_tfvars(TF_DIR / "environments" / f"{env}.tfvars.example")
    unknown = set(values) - set(tf.variables)
    assert not unknown, f"{env}: unknown variables {sorted(unknown)}"
    required = {name for name, body in tf.variables.items() if "default" not in body}
    assert required <= set(values), f"{env}: missing {sorted(required - set(values))}"
    assert values["environment"] == env


def test_outputs_name_the_sidecar_url_function_urls_and_topics(tf: Terraform) -> None:
    assert {"sidecar_internal_url", "function_urls", "topics"} <= set(tf.outputs)
