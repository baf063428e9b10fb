#!/usr/bin/env bash
# Installs every Debian package styleforge needs to build, test and run, and LibTorch (scripts/torch-env.sh).
# Idempotent: prints nothing and touches nothing when all packages are present.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev
  libpng-dev zlib1g-dev libisal-dev libgif-dev
  libjpeg62-turbo-dev python3-h5py
  prometheus prometheus-cpp-dev slurm-wlm munge
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# LibTorch 2.x with CUDA from PyTorch's PyPI wheel (a virtual environment unless a usable torch is
# importable); prints nothing when it is already there.
bash "$(dirname "$0")/torch-env.sh" >/dev/null
