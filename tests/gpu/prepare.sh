#!/usr/bin/env bash
# Run on a CPU machine before a GPU check: downloads the Debian packages that tests/gpu/check.sh
# builds against (HDF5, Open MPI, Boost.Program_options, GoogleTest, nlohmann-json, libpng, libjpeg, ISA-L,
# giflib, GDCM, nifticlib, libzip)
# into .gpudeps/debs, optionally a checkout of the reference (for the side-by-side bench) into
# .gpudeps/reference, and optionally this checkout's binaries built here against the same CUDA
# LibTorch as the GPU machine's (tests/gpu/prebuilt.sh: check.sh then skips its ~4-minute build when
# the sources and torch version match). .gpudeps/ is git-ignored; carry it with the GPU call (the
# device tool's `carry: [".gpudeps"]`, about 30 MB, 45 MB with the binaries).
#   bash tests/gpu/prepare.sh [--reference PATH_TO_stylegan2-ada-pytorch] [--prebuilt BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/gpu/prebuilt.sh
REFERENCE="" PREBUILT=""
while [ $# -gt 0 ]; do
  case $1 in
    --reference) REFERENCE=${2:?--reference needs a path}; shift 2;;
    --prebuilt) PREBUILT=${2:?--prebuilt needs a build folder}; shift 2;;
    *) echo "prepare.sh: unknown argument $1 (--reference DIR, --prebuilt BUILD_DIR)" >&2; exit 2;;
  esac
done
mkdir -p .gpudeps/debs
PKGS=(libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libsz2 libaec0 libcurl3-gnutls
      libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libevent-2.1-7 libevent-core-2.1-7
      libevent-pthreads-2.1-7 libpmix2 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 librdmacm1 libibverbs1
      libnl-3-200 libnl-route-3-200 libnuma1 libmunge2 libxnvctrl0 libltdl7
      libboost-program-options1.74-dev libboost-program-options1.74.0 libboost1.74-dev
      libgtest-dev nlohmann-json3-dev libpng-dev libpng16-16 libjpeg62-turbo-dev libjpeg62-turbo zlib1g-dev libisal-dev libisal2 libgif-dev libgif7
      libgdcm-dev libgdcm3.0 libcharls2 libopenjp2-7 libsocket++1 libjson-c5
      libnifti2-dev libnifti2-2 libniftiio-dev libniftiio2 libnifticdf-dev libnifticdf2 libznz-dev libznz3
      libzip-dev libzip4 libtcmalloc-minimal4
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libcivetweb1 libcurl4 libssh2-1)
(cd .gpudeps/debs && apt-get download "${PKGS[@]}" >/dev/null)
echo "downloaded $(ls .gpudeps/debs | wc -l) packages ($(du -sh .gpudeps/debs | cut -f1)) into .gpudeps/debs"
if [ -n "$REFERENCE" ]; then
  rm -rf .gpudeps/reference && cp -r "$REFERENCE" .gpudeps/reference && rm -rf .gpudeps/reference/.git
  echo "reference copied to .gpudeps/reference"
fi
if [ -n "$PREBUILT" ]; then
  py=$(bash scripts/torch-env.sh)  # the Python whose torch the build links (as scripts/build.sh finds it)
  cmake --build "$PREBUILT" --target styleforge styleforge_tests >/dev/null
  sf_write_prebuilt "$PREBUILT" "$py" .gpudeps/prebuilt
  echo "prebuilt binaries in .gpudeps/prebuilt ($(du -sh .gpudeps/prebuilt | cut -f1)): $(tr '\n' ' ' < .gpudeps/prebuilt/manifest)"
fi
