#!/usr/bin/env bash
# Configures and builds styleforge (the build CI runs, and the Apptainer image's %post).
#   bash scripts/build.sh                      # build/ with tests
#   STYLEFORGE_BUILD_DIR=/opt/sf/build STYLEFORGE_CMAKE_ARGS="-DSTYLEFORGE_BUILD_TESTS=OFF" bash scripts/build.sh
# Extra CMake arguments in STYLEFORGE_CMAKE_ARGS (e.g. -DCMAKE_PREFIX_PATH=... for dependencies
# from a user prefix); targets as arguments (default: all). Prints the build wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache hits across clones in other folders (CI builds a fresh clone): paths relative to here.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
JOBS="${JOBS:-$(nproc)}"
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release ${STYLEFORGE_CMAKE_ARGS:-} >/dev/null
t0=$(date +%s)
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$BUILD" -j "$JOBS" "${targets[@]}"
echo "build: $(($(date +%s) - t0)) s"
