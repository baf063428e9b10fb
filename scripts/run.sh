#!/usr/bin/env bash
# The main command: installs what is needed, builds, and runs what styleforge can do today.
# Training (`styleforge train`) is not implemented yet; until it is, this checks the networks
# against the reference fixtures and packs a sample dataset into the HDF5 pack format.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target styleforge
FIXTURES="${STYLEFORGE_FIXTURES:-../shared/fixtures}"
"$BUILD/styleforge" version
"$BUILD/styleforge" selftest --fixtures "$FIXTURES" --threads "$(nproc)"
mkdir -p runs
"$BUILD/styleforge" pack --source "$FIXTURES/png_gray_16" --dest runs/png_gray_16.h5 --force
echo "pack written: runs/png_gray_16.h5"
