"""The Terraform configuration, parsed with python-hcl2, and the consistency checks.

Each ``check_*`` returns a list of problems (empty = consistent) instead of
asserting, so the tests can also show that a deliberately broken copy of the
configuration is caught: a check that never fails would prove nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from .codemap import ROOT

TF_DIR = ROOT / "terraform"
_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)
PRIMITIVE_ROLES = re.compile(r"roles/(owner|editor|viewer)\b")


@dataclass
class Terraform:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        try:
            return self.resources[(kind, name)]
        except KeyError:
            raise AssertionError(f"terraform declares no {kind}.{name}") from None

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}


def load_terraform(directory: Path = TF_DIR) -> Terraform:
    tf = Terraform()
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle, serialization_options=_OPTIONS)
        for block in doc.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    tf.resources[(kind, name)] = body
        for block in doc.get("locals", []):
            tf.locals.update(block)
        for block in doc.get("variable", []):
            tf.variables.update(block)
        for block in doc.get("output", []):
            tf.outputs.update(block)
    return tf


def load_tfvars(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return dict(hcl2.load(handle, serialization_options=_OPTIONS))


def strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed HCL value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The nested blocks called ``name`` (hcl2 gives a list, or a dict for one)."""
    found = body.get(name, [])
    return found if isinstance(found, list) else [found]


# --- checks -----------------------------------------------------------------------


def check_functions(tf: Terraform, entry_points: dict[str, str]) -> list[str]:
    problems: list[str] = []
    declared = set(tf.locals.get("functions", {}))
    for name in sorted(set(entry_points) - declared):
        problems.append(f"entry point {name} in functions/main.py has no function in terraform")
    for name in sorted(declared - set(entry_points)):
        problems.append(f"terraform function {name} is no entry point in functions/main.py")
    fn = tf.resource("google_cloudfunctions2_function", "function")
    if fn.get("for_each") != "${local.functions}":
        problems.append("google_cloudfunctions2_function.function must iterate local.functions")
    build = blocks(fn, "build_config")[0]
    if build.get("entry_point") != "${each.key}" or build.get("runtime") != "python311":
        problems.append("functions must be python311 with entry_point = each.key")
    service = blocks(fn, "service_config")[0]
    if service.get("service_account_email") != "${google_service_account.function[each.key].email}":
        problems.append("each function must run as its own service account")
    sa = tf.resource("google_service_account", "function")
    if sa.get("for_each") != "${local.functions}":
        problems.append("google_service_account.function must iterate local.functions")
    return problems


def check_schedule(
    tf: Terraform, jobs: list[dict[str, Any]], entry_points: dict[str, str]
) -> list[str]:
    """``jobs``: rows of schedule.yaml (name, target, schedule|topic, timezone)."""
    problems: list[str] = []
    source = tf.locals.get("schedule", "")
    if 'yamldecode(file("${path.module}/../schedule.yaml"))' not in source:
        problems.append("local.schedule must be yamldecode(file(.../../schedule.yaml))")
    scheduled = tf.locals.get("scheduled_jobs", "")
    if "local.schedule_jobs" not in scheduled or "job.schedule" not in scheduled:
        problems.append("local.scheduled_jobs must be generated from the schedule table")
    job = tf.resource("google_cloud_scheduler_job", "job")
    if job.get("for_each") != "${local.scheduled_jobs}":
        problems.append("scheduler jobs must iterate local.scheduled_jobs (from schedule.yaml)")
    if job.get("time_zone") != "${each.value.time_zone}":
        problems.append("scheduler jobs must take their time zone from the table")
    target = blocks(job, "http_target")[0]
    expected_uri = (
        "${google_cloudfunctions2_function.function[each.value.target].service_config[0].uri}"
    )
    if target.get("uri") != expected_uri:
        problems.append("scheduler jobs must call the function their table row names")
    oidc = blocks(target, "oidc_token")
    if not oidc or "google_service_account.scheduler" not in oidc[0].get(
        "service_account_email", ""
    ):
        problems.append("scheduler jobs must send an OIDC token of the scheduler account")
    functions = set(tf.locals.get("functions", {}))
    topics = set(tf.locals.get("topics", []))
    for row in jobs:
        name, target_name = row.get("name"), row.get("target")
        if target_name not in functions:
            problems.append(f"schedule job {name} targets {target_name}, no terraform function")
        if entry_points and target_name not in entry_points:
            problems.append(f"schedule job {name} targets {target_name}, no entry point")
        if row.get("topic") is not None and row["topic"] not in topics:
            problems.append(f"schedule job {name} listens on undeclared topic {row['topic']}")
        if row.get("schedule") is not None and row.get("timezone") != "America/New_York":
            problems.append(f"schedule job {name} is not in America/New_York")
        kind = entry_points.get(str(target_name))
        if kind == "cloud_event" and row.get("topic") is None:
            problems.append(f"{target_name} takes CloudEvents but job {name} has no topic")
        if kind == "http" and row.get("topic") is not None:
            problems.append(f"{target_name} is an HTTP target but job {name} is topic-driven")
    push = tf.resource("google_pubsub_subscription", "push")
    if push.get("for_each") != "${local.topic_jobs}":
        problems.append("push subscriptions must iterate local.topic_jobs (from schedule.yaml)")
    if not blocks(push, "dead_letter_policy") or not blocks(push, "retry_policy"):
        problems.append("push subscriptions need a retry policy and a dead-letter policy")
    return problems


def check_topics(
    tf: Terraform,
    code_topics: set[str],
    function_topics: dict[str, set[str]],
    sidecar_topics: set[str],
) -> list[str]:
    problems: list[str] = []
    declared = set(tf.locals.get("topics", []))
    for topic in sorted(code_topics - declared):
        problems.append(f"the code publishes to topic {topic!r}, terraform does not declare it")
    functions = tf.locals.get("functions", {})
    for fn, topics in sorted(function_topics.items()):
        granted = set(functions.get(fn, {}).get("publishes", []))
        if granted != topics:
            problems.append(
                f"{fn} publishes to {sorted(topics)}, terraform grants {sorted(granted)}"
            )
    granted_sidecar = set(tf.locals.get("sidecar_publishes", []))
    if granted_sidecar != sidecar_topics:
        problems.append(
            f"the sidecar publishes to {sorted(sidecar_topics)}, "
            f"terraform grants {sorted(granted_sidecar)}"
        )
    topic = tf.resource("google_pubsub_topic", "topic")
    dead = tf.resource("google_pubsub_topic", "dead_letter")
    for body, what in ((topic, "topics"), (dead, "dead-letter topics")):
        if "local.topics" not in body.get("for_each", ""):
            problems.append(f"{what} must be created for every entry of local.topics")
    return problems


def check_secrets(
    tf: Terraform,
    catalogue: dict[str, str],
    function_secrets: dict[str, set[str]],
    sidecar_secrets: set[str],
) -> list[str]:
    """``catalogue``: secret id -> env name; ``*_secrets``: secret ids the code reads."""
    problems: list[str] = []
    declared = tf.locals.get("secrets", {})
    for secret_id, env in sorted(catalogue.items()):
        if secret_id not in declared:
            problems.append(f"secret {secret_id} ({env}) is read by code, not declared")
        elif declared[secret_id].get("env") != env:
            problems.append(f"secret {secret_id} must reach the code as {env}")
    for secret_id in sorted(set(declared) - set(catalogue)):
        problems.append(f"terraform declares secret {secret_id}, unknown to spreadpilot.secrets")
    functions = tf.locals.get("functions", {})
    for fn, needed in sorted(function_secrets.items()):
        granted = set(functions.get(fn, {}).get("secrets", []))
        for missing in sorted(needed - granted):
            problems.append(f"{fn} reads secret {missing}, terraform does not grant it")
        for extra in sorted(granted - needed):
            problems.append(f"{fn} is granted secret {extra} its code never reads")
    granted_sidecar = set(tf.locals.get("sidecar_secrets", []))
    for missing in sorted(sidecar_secrets - granted_sidecar):
        problems.append(f"the sidecar reads secret {missing}, terraform does not grant it")
    for extra in sorted(granted_sidecar - sidecar_secrets):
        problems.append(f"the sidecar is granted secret {extra} its code never reads")

    grants = tf.locals.get("function_secret_grants", "")
    if "local.functions" not in grants or "cfg.secrets" not in grants:
        problems.append("local.function_secret_grants must come from local.functions[*].secrets")
    fn_grant = tf.resource("google_secret_manager_secret_iam_member", "function")
    if (
        fn_grant.get("for_each") != "${local.function_secret_grants}"
        or fn_grant.get("member")
        != "serviceAccount:${google_service_account.function[each.value.function].email}"
    ):
        problems.append("function secret grants must go to each function's own account")
    sc_grant = tf.resource("google_secret_manager_secret_iam_member", "sidecar")
    if "local.sidecar_secrets" not in sc_grant.get(
        "for_each", ""
    ) or "google_service_account.sidecar" not in sc_grant.get("member", ""):
        problems.append(
            "sidecar secret grants must be local.sidecar_secrets to the sidecar account"
        )
    for (kind, name), body in tf.resources.items():
        roles = [s for s in strings(body.get("role", "")) if "secretmanager" in s]
        if roles and kind != "google_secret_manager_secret_iam_member":
            problems.append(f"{kind}.{name} grants {roles[0]} beyond single secrets")
    env_block = blocks(
        blocks(tf.resource("google_cloudfunctions2_function", "function"), "service_config")[0],
        "dynamic",
    )
    injected = [d for d in env_block if "secret_environment_variables" in d]
    if not injected or "each.value.secrets" not in str(injected[0]):
        problems.append("functions must receive only their own secrets (each.value.secrets)")
    return problems


def check_sidecar_ingress(tf: Terraform) -> list[str]:
    problems: list[str] = []
    for name, vm in tf.of_type("google_compute_instance").items():
        for nic in blocks(vm, "network_interface"):
            if "access_config" in nic or "ipv6_access_config" in nic:
                problems.append(f"google_compute_instance.{name} has an external IP")
    vm = tf.resource("google_compute_instance", "sidecar")
    tags = set(vm.get("tags", []))
    port = "${tostring(var.sidecar_port)}"
    for name, rule in tf.of_type("google_compute_firewall").items():
        if rule.get("direction", "INGRESS") != "INGRESS":
            continue
        sources = list(rule.get("source_ranges", []))
        if any(s in ("0.0.0.0/0", "::/0") for s in sources):
            problems.append(f"firewall {name} is open to the internet")
        targets = set(rule.get("target_tags", []))
        if targets and not targets & tags:
            continue
        ports = {p for allow in blocks(rule, "allow") for p in allow.get("ports", ["*"])}
        reaches_api = not targets or port in ports or "*" in ports or "8001" in ports
        if reaches_api and sources != ["${var.connector_cidr}"]:
            problems.append(
                f"firewall {name} lets {sources} reach the sidecar port; only the connector may"
            )
    return problems


def check_no_primitive_roles(tf: Terraform) -> list[str]:
    problems: list[str] = []
    for (kind, name), body in tf.resources.items():
        for text in strings(body):
            if PRIMITIVE_ROLES.search(text):
                problems.append(f"{kind}.{name} uses a primitive role ({text})")
    for text in strings(tf.locals):
        if PRIMITIVE_ROLES.search(text):
            problems.append(f"a local uses a primitive role ({text})")
    return problems
