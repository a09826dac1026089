"""Pass/fail gate over pip-audit's JSON report (``scripts/audit.sh`` runs it).

pip-audit exits non-zero on any known vulnerability, including ones nobody
has fixed yet; failing the build on those would block every change for
something no change here can cure. So this gate fails only on what an
upgrade cures: a known vulnerability with at least one fixed release.

It also refuses to stay quiet about the opposite failure: when the
vulnerability service cannot answer, pip-audit marks every package as
skipped and still prints "No known vulnerabilities found". Unaudited
packages are reported as such; ``AUDIT_REQUIRE_COMPLETE=1`` (or
``--require-complete``) turns that into a failure, for machines where the
service is known to be reachable.

Exit codes: 0 pass, 1 fixable vulnerabilities, 2 unreadable report,
3 incomplete audit when completeness is required.

    python scripts/audit_gate.py REPORT.json [--require-complete]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One vulnerability of one locked package."""

    package: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def describe(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fixed = ", ".join(self.fix_versions) if self.fix_versions else "no fix released"
        return f"{self.package} {self.version}: {self.vuln_id}{aliases}; fixed in: {fixed}"


@dataclass(frozen=True)
class Verdict:
    """What the report says, split by what can be done about it."""

    audited: int
    fixable: list[Finding]
    unfixable: list[Finding]
    skipped: list[tuple[str, str]]


def judge(report: dict[str, Any]) -> Verdict:
    """Classify every dependency of a pip-audit JSON report."""
    fixable: list[Finding] = []
    unfixable: list[Finding] = []
    skipped: list[tuple[str, str]] = []
    audited = 0
    for dep in report.get("dependencies", []):
        name = str(dep.get("name", "?"))
        if "skip_reason" in dep:
            skipped.append((name, str(dep["skip_reason"])))
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            finding = Finding(
                package=name,
                version=str(dep.get("version", "?")),
                vuln_id=str(vuln.get("id", "?")),
                aliases=tuple(str(a) for a in vuln.get("aliases", [])),
                fix_versions=tuple(str(v) for v in vuln.get("fix_versions", [])),
            )
            (fixable if finding.fix_versions else unfixable).append(finding)
    return Verdict(audited, fixable, unfixable, skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="pip-audit --format json output")
    parser.add_argument(
        "--require-complete",
        action="store_true",
        default=os.environ.get("AUDIT_REQUIRE_COMPLETE", "") not in ("", "0"),
        help="fail when any package could not be audited",
    )
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"[audit] cannot read the pip-audit report: {exc}", file=sys.stderr)
        return 2
    verdict = judge(report)
    total = verdict.audited + len(verdict.skipped)

    for finding in verdict.unfixable:
        print(f"[audit] known, not yet fixable (not failing): {finding.describe()}")
    if verdict.skipped:
        reasons = sorted({reason.split(":")[0] for _, reason in verdict.skipped})
        print(
            f"[audit] WARNING: {len(verdict.skipped)} of {total} locked packages could NOT be "
            f"audited ({'; '.join(reasons)}). Their vulnerability status is unknown, not clean.",
            file=sys.stderr,
        )
        if verdict.audited == 0:
            print(
                "[audit] WARNING: the vulnerability service answered for no package; "
                "check that the package index's per-version JSON API is reachable.",
                file=sys.stderr,
            )
    if verdict.fixable:
        print(f"[audit] FAIL: {len(verdict.fixable)} known vulnerabilities have a fix:")
        for finding in verdict.fixable:
            print(f"[audit]   {finding.describe()}")
        print("[audit] upgrade with: python3 -m uv lock --upgrade-package NAME && make test")
        return 1
    if verdict.skipped and args.require_complete:
        print("[audit] FAIL: the audit is incomplete and AUDIT_REQUIRE_COMPLETE is set")
        return 3
    if verdict.audited == 0 and total:
        print(f"[audit] passed WITHOUT auditing: none of {total} packages could be checked")
        return 0
    print(
        f"[audit] ok: {verdict.audited} of {total} packages audited, "
        f"no known vulnerability with a fix ({len(verdict.unfixable)} without one)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
