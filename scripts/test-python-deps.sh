#!/usr/bin/env bash
# Python packages the tests read results with, pinned, installed into the torch venv (the Python
# scripts/torch-env.sh prints): `tensorboard` for tests/tb_check.py (tests/e2e_tensorboard.sh).
# Idempotent and silent when everything is already there.
#   bash scripts/test-python-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TENSORBOARD_VERSION=2.20.0
py="${STYLEFORGE_TEST_PYTHON:-$(bash scripts/torch-env.sh)}"
if ! "$py" -c "import sys, tensorboard; sys.exit(tensorboard.__version__ != '$TENSORBOARD_VERSION')" 2>/dev/null; then
  echo "installing tensorboard==$TENSORBOARD_VERSION into $("$py" -c 'import sys; print(sys.prefix)')"
  "$py" -m pip install --quiet --disable-pip-version-check "tensorboard==$TENSORBOARD_VERSION"
fi
