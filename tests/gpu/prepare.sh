#!/usr/bin/env bash
# Run on a CPU machine before a GPU check: downloads the Debian packages that tests/gpu/check.sh
# builds against (HDF5, Open MPI, Boost.Program_options, GoogleTest, nlohmann-json, libpng, libjpeg, ISA-L,
# giflib, GDCM, nifticlib, libzip)
# into .gpudeps/debs, and optionally a checkout of the reference (for the side-by-side bench) into
# .gpudeps/reference. .gpudeps/ is git-ignored; carry it with the GPU call (the device tool's
# `carry: [".gpudeps"]`, about 40 MB).
#   bash tests/gpu/prepare.sh [--reference PATH_TO_stylegan2-ada-pytorch]
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpudeps/debs
PKGS=(libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libsz2 libaec0 libcurl3-gnutls
      libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libevent-2.1-7 libevent-core-2.1-7
      libevent-pthreads-2.1-7 libpmix2 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 librdmacm1 libibverbs1
      libnl-3-200 libnl-route-3-200 libnuma1 libmunge2 libxnvctrl0 libltdl7
      libboost-program-options1.74-dev libboost-program-options1.74.0 libboost1.74-dev
      libgtest-dev nlohmann-json3-dev libpng-dev libpng16-16 libjpeg62-turbo-dev libjpeg62-turbo zlib1g-dev libisal-dev libisal2 libgif-dev libgif7
      libgdcm-dev libgdcm3.0 libcharls2 libopenjp2-7 libsocket++1 libjson-c5
      libnifti2-dev libnifti2-2 libniftiio-dev libniftiio2 libnifticdf-dev libnifticdf2 libznz-dev libznz3
      libzip-dev libzip4 libtcmalloc-minimal4)
(cd .gpudeps/debs && apt-get download "${PKGS[@]}" >/dev/null)
echo "downloaded $(ls .gpudeps/debs | wc -l) packages ($(du -sh .gpudeps/debs | cut -f1)) into .gpudeps/debs"
if [ "${1:-}" = "--reference" ] && [ -n "${2:-}" ]; then
  rm -rf .gpudeps/reference && cp -r "$2" .gpudeps/reference && rm -rf .gpudeps/reference/.git
  echo "reference copied to .gpudeps/reference"
fi
