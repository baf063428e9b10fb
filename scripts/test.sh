#!/usr/bin/env bash
# The test command: installs what is needed (idempotent), configures, builds and runs every test.
#   bash scripts/test.sh            # all labels
#   CTEST_LABELS=unit bash scripts/test.sh
# Prints the build and test wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
t0=$(date +%s)
cmake --build "$BUILD" -j "$JOBS"
t1=$(date +%s)
echo "build: $((t1 - t0)) s"
label_args=()
[ -n "${CTEST_LABELS:-}" ] && label_args=(-L "$CTEST_LABELS")
(cd "$BUILD" && ctest --output-on-failure "${label_args[@]}")
t2=$(date +%s)
echo "tests: $((t2 - t1)) s"
