#!/usr/bin/env bash
# What the tests need beyond the build: GoogleTest, HDF5's command-line tools and h5py (pack
# checks), a local Slurm with munge (requeue tests), Prometheus (the text-file exporter check),
# Chromium and its WebDriver (the Visual Turing Test page is clicked through headless, e2e_vtt),
# GDCM's tools (gdcmconv writes the compressed DICOM the importer tests read), nibabel (the
# orientation checks),
# and the Python packages of the Python-side checks (scripts/test-python-deps.sh). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
bash apt-install.sh libgtest-dev libgmock-dev hdf5-tools python3-h5py prometheus slurm-wlm munge \
  chromium chromium-driver libgdcm-tools python3-nibabel
if [ -f test-python-deps.sh ]; then bash test-python-deps.sh; fi
