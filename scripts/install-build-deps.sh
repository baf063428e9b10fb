#!/usr/bin/env bash
# What building styleforge needs: compilers and build tools, the libraries it links, and LibTorch
# (scripts/torch-env.sh). Debian 12 or Ubuntu 22.04/24.04 (the CUDA base images). Idempotent.
# The Prometheus HTTP endpoint is built when prometheus-cpp-dev is installed (optional).
set -euo pipefail
cd "$(dirname "$0")"
bash apt-install.sh \
  build-essential cmake ninja-build ccache pkg-config python3 python3-venv \
  libopenmpi-dev openmpi-bin \
  libhdf5-dev \
  libboost-program-options-dev nlohmann-json3-dev \
  libpng-dev zlib1g-dev libjpeg-dev libisal-dev libgif-dev \
  libgdcm-dev libnifti2-dev libzip-dev libtcmalloc-minimal4
if [ "${STYLEFORGE_PROMETHEUS_CPP:-1}" = 1 ] && apt-cache show prometheus-cpp-dev >/dev/null 2>&1; then
  bash apt-install.sh prometheus-cpp-dev
fi
# LibTorch 2.x with CUDA from PyTorch's PyPI wheel (a virtual environment unless a usable torch is
# importable); prints nothing when it is already there.
bash torch-env.sh >/dev/null
