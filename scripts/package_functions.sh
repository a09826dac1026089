#!/usr/bin/env bash
# Builds the Cloud Functions source archive: the layout the Python 3.11
# runtime expects at the root of the zip.
#
#   main.py            re-exports the entry points of functions/main.py (the
#                      runtime looks for main.py at the root)
#   functions/         the entry points and one module per job
#   spreadpilot/       the shared library, importable as on a developer machine
#   requirements.txt   exported from uv.lock (pinned, hashed, no dev tools), so
#                      the deployed functions run the same versions as the tests
#
# Usage: scripts/package_functions.sh [OUTPUT_ZIP]   (default dist/functions-source.zip)
# Needs python3 with uv (as scripts/bootstrap.sh installs it). Reproducible:
# files are added in sorted order with a fixed timestamp, so an unchanged tree
# gives a byte-identical zip and Terraform does not redeploy.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-dist/functions-source.zip}
PY=${PYTHON:-python3}
if "$PY" -m uv --version >/dev/null 2>&1; then
  UV=("$PY" -m uv)
elif command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  "$PY" -m pip install --quiet --disable-pip-version-check uv
  UV=("$PY" -m uv)
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Runtime dependencies only: not the project itself (its code is copied in),
# not the dev group.
"${UV[@]}" export --frozen --no-dev --no-emit-project --no-header --quiet \
  --output-file "$stage/requirements.txt"

mkdir -p "$stage/functions" "$stage/spreadpilot"
(cd functions && find . -name '*.py' -not -path '*/__pycache__/*' -print0 \
  | xargs -0 -I{} cp --parents {} "$stage/functions/")
(cd shared/spreadpilot && find . -type f \( -name '*.py' -o -name '*.sql' -o -name '*.yaml' -o -name '*.json' \) \
  -not -path '*/__pycache__/*' -print0 \
  | xargs -0 -I{} cp --parents {} "$stage/spreadpilot/")
cp schedule.yaml "$stage/schedule.yaml"

cat >"$stage/main.py" <<'EOF'
"""Cloud Functions looks for the entry points in main.py at the source root."""

from functions.main import *  # noqa: F403
EOF

mkdir -p "$(dirname "$out")"
"$PY" - "$stage" "$out" <<'EOF'
import os
import sys
import zipfile

stage, out = sys.argv[1], sys.argv[2]
paths = []
for root, _dirs, files in os.walk(stage):
    for name in files:
        full = os.path.join(root, name)
        paths.append(os.path.relpath(full, stage))
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for rel in sorted(paths):
        info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(stage, rel), "rb") as handle:
            archive.writestr(info, handle.read())
print(f"{out}: {len(paths)} files")
EOF
