#!/usr/bin/env bash
# The test command: installs what is needed (idempotent), configures, builds and runs every test.
#   bash scripts/test.sh            # every label but gpu (CTEST_LABELS=gpu on a GPU machine)
#   CTEST_LABELS=unit bash scripts/test.sh
# Prints the build and test wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/test-python-deps.sh  # tensorboard for tests/tb_check.py
# ccache hits across clones in other folders (CI builds a fresh clone): paths relative to here.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
t0=$(date +%s)
cmake --build "$BUILD" -j "$JOBS"
t1=$(date +%s)
echo "build: $((t1 - t0)) s"
# Every label but `gpu` (registered in CUDA builds; it needs a GPU: tests/gpu/check.sh runs it there).
label_args=(-LE gpu)
[ -n "${CTEST_LABELS:-}" ] && label_args=(-L "$CTEST_LABELS")
(cd "$BUILD" && ctest --output-on-failure "${label_args[@]}")
t2=$(date +%s)
echo "tests: $((t2 - t1)) s"
