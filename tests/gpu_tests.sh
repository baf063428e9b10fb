#!/bin/bash
# ctest label `gpu` (CUDA builds only): the Gpu* suites of styleforge_tests, one rank per visible GPU
# (at most 8) under mpirun. Fails, rather than skips, when no GPU is visible.
set -euo pipefail
tests_bin=$1
if ! command -v nvidia-smi >/dev/null || ! n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
  echo "gpu tests: no NVIDIA GPU visible (nvidia-smi -L failed); run this label on a GPU node" >&2
  exit 1
fi
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then n=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .); fi
[ "$n" -gt 8 ] && n=8
[ "$n" -ge 1 ] || { echo "gpu tests: no GPU visible" >&2; exit 1; }
echo "gpu tests: $n rank(s), one per GPU"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
exec mpirun --oversubscribe -np "$n" "$tests_bin" --gtest_brief=1 '--gtest_filter=Gpu*'
