#!/usr/bin/env bash
# The test command: installs what is needed (idempotent), configures, builds and runs every test.
#   bash scripts/test.sh            # every label but gpu (CTEST_LABELS=gpu on a GPU machine)
#   CTEST_LABELS=unit bash scripts/test.sh
# Prints the build and test wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh  # build + test dependencies, the tests' Python packages included
# Tests that compare with the reference's own code (export) use a checkout of stylegan2-ada-pytorch:
# $STYLEFORGE_REFERENCE, else ~/stylegan2-ada-pytorch when present; without one they say they skip.
if [ -z "${STYLEFORGE_REFERENCE:-}" ] && [ -f "$HOME/stylegan2-ada-pytorch/legacy.py" ]; then
  export STYLEFORGE_REFERENCE="$HOME/stylegan2-ada-pytorch"
fi
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
bash scripts/build.sh
t1=$(date +%s)
# Every label but `gpu` (registered in CUDA builds; it needs a GPU: tests/gpu/check.sh runs it there).
label_args=(-LE gpu)
[ -n "${CTEST_LABELS:-}" ] && label_args=(-L "$CTEST_LABELS")
(cd "$BUILD" && ctest --output-on-failure "${label_args[@]}")
t2=$(date +%s)
echo "tests: $((t2 - t1)) s"
