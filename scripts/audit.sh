#!/usr/bin/env bash
# Known-vulnerability audit of the locked dependencies (pip-audit, run by `make test`).
#
# Audits exactly what uv.lock pins (every group, the project itself excluded),
# not whatever happens to be installed, so the answer is the same on every
# machine. The pass/fail decision is scripts/audit_gate.py's: it fails only on
# a known vulnerability that has a fixed release, because that one is an
# upgrade away; one with no fix yet is printed but cannot be acted on.
#
# Extra arguments go to pip-audit, e.g. `scripts/audit.sh --ignore-vuln GHSA-xxxx`
# for an advisory that was reviewed and does not apply.
# AUDIT_REQUIRE_COMPLETE=1 also fails when packages could not be audited at all
# (vulnerability service unreachable); without it that is a loud warning.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m uv export --frozen --no-hashes --format requirements.txt --no-emit-project \
  --all-groups --no-header --quiet -o "$work/requirements.txt"

# pip-audit exits 1 whenever it finds any vulnerability; the gate decides.
# --no-deps/--disable-pip: the export is fully pinned, nothing to resolve.
status=0
"$VENV/pip-audit" -r "$work/requirements.txt" --no-deps --disable-pip \
  --progress-spinner off --format json --output "$work/audit.json" "$@" \
  2>"$work/pip-audit.log" || status=$?

if [[ ! -s "$work/audit.json" ]]; then
  echo "[audit] pip-audit produced no report (exit $status):" >&2
  cat "$work/pip-audit.log" >&2
  exit 2
fi
exec "$VENV/python" scripts/audit_gate.py "$work/audit.json"
