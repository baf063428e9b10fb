#!/usr/bin/env bash
# What the tests need beyond the build: GoogleTest, HDF5's command-line tools and h5py (pack
# checks), a local Slurm with munge (requeue tests), Prometheus (the text-file exporter check),
# and the Python packages of the Python-side checks (scripts/test-python-deps.sh). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
bash apt-install.sh libgtest-dev libgmock-dev hdf5-tools python3-h5py prometheus slurm-wlm munge
if [ -f test-python-deps.sh ]; then bash test-python-deps.sh; fi
