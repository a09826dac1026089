#!/usr/bin/env bash
# Python side of the set-up: uv (from PyPI) and the locked virtualenv in .venv.
# Idempotent: a second run only checks that the lock still matches.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "[bootstrap] installing uv from PyPI"
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
"$PY" -m uv sync --frozen --quiet
echo "[bootstrap] python environment ready: .venv"
