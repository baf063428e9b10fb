#!/usr/bin/env bash
# The main command: installs what is needed, builds, creates the embedded default dataset (MRI-like
# head phantoms, 64x64 grayscale, labelled lesion / no lesion), trains a small conditional
# StyleGAN2-ADA on the CPU for a few minutes, and generates images from the last checkpoint.
#   bash scripts/run.sh                  # defaults below
#   DEMO_KIMG=2 bash scripts/run.sh      # train longer
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD="${STYLEFORGE_BUILD_DIR:-build}"
bash scripts/build.sh styleforge
SF="$BUILD/styleforge"
"$SF" version

mkdir -p runs
if [ ! -f runs/phantoms64.h5 ]; then
  "$SF" phantoms --dest runs/phantoms64 --count 2000 --resolution 64 --seed 0 --force --quiet
  "$SF" pack --source runs/phantoms64 --dest runs/phantoms64.h5 --force 2>/dev/null
fi

# A small network so that a CPU makes visible progress in minutes; ADA reacts faster than the
# reference's 500 kimg so that p moves within the demo; a 16x8 snapshot grid instead of 32x32.
"$SF" train --data runs/phantoms64.h5 --outdir runs --cond --mirror \
  --cbase 2048 --cmax 64 --batch 16 --kimg "${DEMO_KIMG:-3}" --tick 0.5 --snap 2 --ada-kimg 5 \
  --grid 16x8 --metrics none --threads "$(nproc)"

RUN=$(ls -d runs/[0-9]*/ | sort | tail -1)
CKPT=$(ls "$RUN"network-snapshot-*.h5 | sort | tail -1)
"$SF" generate --network "$CKPT" --seeds 0-15 --trunc 0.7 --class 1 --outdir "${RUN}generated-lesion"
"$SF" generate --network "$CKPT" --seeds 0-15 --trunc 0.7 --class 0 --outdir "${RUN}generated-healthy"
echo
echo "run directory: $RUN"
ls "$RUN"
