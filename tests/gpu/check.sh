#!/usr/bin/env bash
# The GPU check, in one call on a machine with one NVIDIA GPU (about 9.5 minutes):
#   1. builds styleforge there against the machine's own PyTorch (CUDA LibTorch) with the Debian
#      libraries carried in .gpudeps/debs (tests/gpu/prepare.sh), nvcc compiling trainer/cuda/*.cu,
#      unless the binaries carried in .gpudeps/prebuilt (prepare.sh --prebuilt) were built from
#      these sources against the same torch version and load there (tests/gpu/prebuilt.sh);
#   2. runs the `gpu` ctest label: NCCL sums/broadcasts, the gradient clean-up kernel against its host
#      arithmetic, one training iteration on CUDA float32 against the CPU (relative error
#      <= 1e-4 on every parameter), and tests/test_gpu_kernels.cpp: the fused bias_act kernel against
#      bias_act_ref and the CPU loop (float32/float16, forward, first and second order), one step's
#      phases with the kernel on and off, and mixed-precision blocks against trainer/precision.h;
#   2b. the reference's training-step phases in fp16 on CUDA (tests/gpu/fp16_reference.py; needs
#      .gpudeps/reference, a FAIL without) recomputed by ours under mixed precision (2e-2 relative), and
#      the same in float32 (1e-3) as a control of the comparison itself;
#   3. trains 2 ranks on that one GPU over MPI (--shared-gpu, gradients staged through host memory)
#      for a few ticks, then resumes a run on CUDA and compares 2+2 ticks with 4 ticks (counters
#      exact, weights within float32 rounding: CUDA's atomic-add kernels are not bitwise reproducible);
#   4. generates the same seeds with --batch 1 and 7 on CUDA (identical PNGs expected) and 10000
#      seeds into a pack;
#   4b. trains a few ticks with --fp32 false --nhwc (mixed precision, channels_last) on CUDA;
#   5. runs `styleforge bench-ops --device cuda` (each fused kernel against its ATen formulation) and
#      `styleforge bench --cfg auto --resolution 256 --device cuda` in float32 and with --fp32 false
#      (sec/kimg and peak GPU memory of each) and, when a checkout of the reference was carried in
#      .gpudeps/reference, tools/bench_reference.py beside it on the same GPU, printing both sec/kimg.
# Time on an H200 (estimate): build ~4 min (none with prepare.sh --prebuilt), gpu label ~1 min, fp16 reference ~1 min (its CUDA
# plugins compile on first use or fall back), MPI/resume/generate ~1.5 min, mixed-precision ticks
# ~20 s, benches ~2 min: about 9.5 minutes.
# Usage (device tool): command "bash tests/gpu/check.sh", carry [".gpudeps"], timeout 600; with
# prepare.sh --prebuilt (no build there, about 5.5 minutes) the whole check fits one call.
# GPU_CHECK_PART=tests runs steps 1-4b, GPU_CHECK_PART=bench steps 1 and 5 (the build is kept on a
# warm machine between calls): two calls when one would come too close to the 600 s limit.
# Output also goes to $OUT/gpu-check.log when $OUT is set.
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU at small sizes (ctest gpu_check_cpu: this
# script's plumbing in CI), with the binaries of GPU_CHECK_BUILD (a build folder; no build then),
# skipping only what needs CUDA (the gpu label, the fp16 reference; the reference runs in float32
# when $STYLEFORGE_REFERENCE names a checkout). GPU_CHECK_PYTHON is the Python for the HDF5
# checks (h5py, numpy), GPU_CHECK_TORCH_PYTHON the one with torch (both python3 by default; on the
# CPU the latter is scripts/torch-env.sh's).
set -uo pipefail
cd "$(dirname "$0")/../.."
LOG=${OUT:-/tmp}/gpu-check$([ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && echo -cpu).log
exec > >(tee "$LOG") 2>&1
t0=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - t0 )) s)"; }
fail=0
PART=${GPU_CHECK_PART:-all}
case $PART in all|tests|bench) ;; *) echo "GPU_CHECK_PART must be all, tests or bench"; exit 2;; esac
check() { if "$@"; then echo "PASS: $*"; else echo "FAIL: $*"; fail=1; fi; }
DEV=${GPU_CHECK_DEVICE:-cuda}
case $DEV in cuda|cpu) ;; *) echo "GPU_CHECK_DEVICE must be cuda or cpu"; exit 2;; esac
PY=${GPU_CHECK_PYTHON:-python3}
if [ -n "${GPU_CHECK_TORCH_PYTHON:-}" ]; then TORCH_PY=$GPU_CHECK_TORCH_PYTHON
elif [ $DEV = cpu ]; then TORCH_PY=$(bash scripts/torch-env.sh) || exit 1
else TORCH_PY=python3; fi
# The reference: carried for a GPU machine; on the CPU, $STYLEFORGE_REFERENCE's checkout if any.
REF=.gpudeps/reference
[ $DEV = cpu ] && REF=${STYLEFORGE_REFERENCE:-/nonexistent}
W=${GPU_CHECK_WORK:-/tmp/sfgpu-$DEV}  # runs, snapshots and images of the steps below

step "machine"
if [ $DEV = cuda ]; then
  nvidia-smi -L || { echo "no GPU visible"; exit 1; }
else
  echo "GPU_CHECK_DEVICE=cpu: this script's steps on the CPU at small sizes, no GPU used"
fi
$TORCH_PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'

step "carried Debian libraries"
ROOT=/tmp/sfroot
ML=$ROOT/usr/lib/x86_64-linux-gnu
if [ $DEV = cuda ] && ls .gpudeps/debs/*.deb >/dev/null 2>&1; then
  mkdir -p $ROOT
  for f in .gpudeps/debs/*.deb; do dpkg -x "$f" $ROOT; done
  export LD_LIBRARY_PATH=$ML:$ML/openmpi/lib:$ML/hdf5/serial:${LD_LIBRARY_PATH:-}
  export PATH=$ROOT/usr/bin:$PATH
  export OPAL_PREFIX=$ROOT/usr
  export CPATH=$ROOT/usr/include:$ROOT/usr/include/hdf5/serial:$ML/openmpi/include:${CPATH:-}
else
  echo "none unpacked (the system's libraries)"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=$(command -v mpirun || echo $ROOT/usr/bin/orterun)

step "build"
. tests/gpu/prebuilt.sh
B=build-gpu
if [ -n "${GPU_CHECK_BUILD:-}" ]; then
  B=$GPU_CHECK_BUILD
  echo "the binaries of $B (GPU_CHECK_BUILD)"
fi
# The binaries carried in .gpudeps/prebuilt (prepare.sh --prebuilt) when they were built from these
# sources against this machine's torch and load here; else a build here (about 4 minutes).
# HDF5 by FindHDF5's own cache variables: given HDF5_ROOT it searches that root alone, under
# include/ and hdf5/serial/ but never Debian's include/hdf5/serial/ (a configure with CMake 4.4 and
# the system's HDF5 hidden found none).
if [ "$B" = build-gpu ] && ! sf_use_prebuilt .gpudeps/prebuilt build-gpu; then
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTYLEFORGE_PYTHON="$(command -v python3)" \
    -DCMAKE_PREFIX_PATH="$ROOT/usr" -DHDF5_C_INCLUDE_DIR="$ROOT/usr/include/hdf5/serial" \
    -DHDF5_C_LIBRARY_hdf5="$ML/hdf5/serial/libhdf5.so" \
    -DMPI_CXX_ADDITIONAL_INCLUDE_DIRS="$ML/openmpi/include" -DMPI_CXX_LIB_NAMES="mpi_cxx;mpi" \
    -DMPI_mpi_LIBRARY="$ML/openmpi/lib/libmpi.so" -DMPI_mpi_cxx_LIBRARY="$ML/openmpi/lib/libmpi_cxx.so" \
    -DMPI_CXX_HEADER_DIR="$ML/openmpi/include" -DCMAKE_CUDA_ARCHITECTURES=90 > /tmp/cfg.log 2>&1 \
    || { tail -40 /tmp/cfg.log; echo "FAIL: configure"; exit 1; }
  grep "styleforge:" /tmp/cfg.log
  cmake --build build-gpu -j "$(nproc)" --target styleforge styleforge_tests 2>&1 | tail -3
fi
[ -x $B/styleforge ] && [ -x $B/styleforge_tests ] || { echo "FAIL: build"; exit 1; }
SF=$B/styleforge
TESTS=$B/styleforge_tests
$SF version

if [ "$PART" != bench ]; then
step "gpu label (NCCL, kernel, one iteration CUDA vs CPU)"
if [ $DEV = cuda ]; then check bash tests/gpu_tests.sh $TESTS; else echo "skipped on the CPU (needs CUDA)"; fi

step "the reference's fp16 step against ours under mixed precision"
modes="fp16 fp32"; [ $DEV = cpu ] && modes=fp32  # no float16 convolutions on the CPU
if [ -d "$REF" ]; then
  for mode in $modes; do
    f=/tmp/sf-reference-$mode-$DEV.h5; flag=""; [ $mode = fp32 ] && flag=--fp32
    if timeout 240 $TORCH_PY tests/gpu/fp16_reference.py --reference "$REF" --device $DEV $flag --out $f 2>&1 | tail -2; then
      check env STYLEFORGE_FP16_REFERENCE=$f STYLEFORGE_FP16_REFERENCE_FP32=$([ $mode = fp32 ] && echo 1 || echo 0) \
        $TESTS --gtest_also_run_disabled_tests --gtest_filter='GpuKernelFp16Reference.*'
    else
      echo "FAIL: tests/gpu/fp16_reference.py $flag"; fail=1
    fi
  done
elif [ $DEV = cuda ]; then
  echo "FAIL: no reference checkout carried (.gpudeps/reference, tests/gpu/prepare.sh --reference)"; fail=1
else
  echo "skipped: \$STYLEFORGE_REFERENCE names no checkout of the reference"
fi

step "2 ranks on one GPU over MPI, a few ticks, exact resume on $DEV"
rm -rf $W; mkdir -p $W
# The GPU sizes; on the CPU a small network at 32x32, one thread a rank.
if [ $DEV = cuda ]; then RES=64 NET="--cbase 4096 --cmax 256" EXTRA=--shared-gpu
else RES=32 NET="--cbase 1024 --cmax 32 --threads 1" EXTRA=""; fi
$SF phantoms --dest $W/ph --count 256 --resolution $RES --seed 0 --force --quiet
$SF pack --source $W/ph --dest $W/ph.h5 --force >/dev/null
# --nobench: the same convolution algorithms in every process (benchmark mode may pick others).
common="--data $W/ph.h5 $NET --batch 16 --tick 0.064 --snap 1 --metrics none --device $DEV --nobench"
check $MPIRUN -np 2 $SF train $common --outdir $W/mpi --kimg 0.192 $EXTRA --comm mpi
check $SF train $common --run-dir $W/a --kimg 0.128
check $SF train $common --run-dir $W/a --resume latest --kimg 0.256
check $SF train $common --run-dir $W/b --kimg 0.256
$PY - "$W" 256 <<'PY' && echo "PASS: resume on $DEV is exact" || { echo "FAIL: resume on $DEV"; fail=1; }
import sys, glob, h5py, numpy as np
w, kimg_nimg = sys.argv[1], int(sys.argv[2])
# The last snapshot of each run by its image count: below 1 kimg the names share the kimg part and
# later ones carry the count as a suffix, so the names do not sort by time.
def last(run):
    return max(glob.glob(w + "/" + run + "/network-snapshot-*.h5"), key=lambda p: int(h5py.File(p).attrs["cur_nimg"]))
a, b = last("a"), last("b")
fa, fb = h5py.File(a), h5py.File(b)
if int(fa.attrs["cur_nimg"]) < kimg_nimg:
    sys.exit("the resumed run ends at %d images, before %d" % (int(fa.attrs["cur_nimg"]), kimg_nimg))
# Counters and random streams continue exactly; weights agree to float32 rounding (CUDA kernels
# that accumulate with atomics, e.g. grid_sample's backward, are not bitwise reproducible run to run).
bad, worst, exact = [], 0.0, 0
for net in ("G", "D", "G_ema"):
    for k in fa[net]:
        x, y = fa[net][k][()].astype(np.float64), fb[net][k][()].astype(np.float64)
        exact += np.array_equal(x, y)
        rel = np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12)
        worst = max(worst, rel)
        if rel > 1e-3: bad.append(net + "/" + k)
for attr in ("cur_nimg", "batch_idx", "cur_tick"):
    if fa.attrs[attr] != fb.attrs[attr]: bad.append(attr)
print("compared", a, b, "bitwise equal tensors:", exact, "largest relative difference: %.3g" % worst, "bad:", bad[:5])
sys.exit(1 if bad else 0)
PY

step "mixed precision: a few ticks with --fp32 false --nhwc on $DEV (float32 on the CPU)"
check $SF train $common --outdir $W/mp --kimg 0.128 --fp32 false --nhwc
$PY - "$W" <<'PY' && echo "PASS: mixed-precision snapshot finite" || { echo "FAIL: mixed-precision snapshot"; fail=1; }
import sys, glob, h5py, numpy as np
snaps = sorted(glob.glob(sys.argv[1] + "/mp/*/network-snapshot-*.h5"))
bad = [s + ":" + n + "/" + k for s in snaps for f in [h5py.File(s)] for n in ("G", "D", "G_ema") for k in f[n]
       if not np.isfinite(f[n][k][()]).all()]
print(len(snaps), "snapshots, non-finite tensors:", bad[:5]); sys.exit(1 if bad or not snaps else 0)
PY

step "generate on $DEV: --batch never changes an image; 10000 seeds into a pack"
CK=$($PY -c 'import sys, glob, h5py; print(max(glob.glob(sys.argv[1] + "/network-snapshot-*.h5"), key=lambda p: int(h5py.File(p).attrs["cur_nimg"])))' $W/b)
check $SF generate --network $CK --seeds 0-63 --batch 1 --device $DEV --outdir $W/g1 --quiet
check $SF generate --network $CK --seeds 0-63 --batch 7 --device $DEV --outdir $W/g7 --quiet
check diff -r $W/g1 $W/g7
check $SF generate --network $CK --seeds 0-9999 --batch 64 --device $DEV --dest $W/g.h5 --quiet

fi
if [ "$PART" != tests ]; then
step "bench: ours and the reference's loop on $DEV (256x256 --cfg auto on a GPU)"
if [ $DEV = cuda ]; then
  OPS="--iters 5" BENCH="--cfg auto --resolution 256 --batch 32 --iters 16" REFB="--cfg auto --resolution 256 --batch 32 --iters 16 --pairs 2"
else
  OPS="--iters 1 --only upfirdn2d" BENCH="--resolution 32 --cbase 1024 --cmax 32 --batch 8 --iters 2"
  REFB="--resolution 32 --cbase 1024 --cmax 32 --batch 8 --iters 2 --pairs 1 --python $TORCH_PY"
fi
mkdir -p $W
echo "--- each fused kernel against its ATen formulation (styleforge bench-ops)"
$SF bench-ops --device $DEV $OPS 2>&1 | tail -20 | tee $W/bench-ops.txt
grep -q "fused/aten" $W/bench-ops.txt && echo "PASS: bench-ops" || { echo "FAIL: bench-ops printed no ratio"; fail=1; }
# float32 and mixed precision; mixed precision again with the fused kernels (bias_act, upfirdn2d,
# multi-tensor Adam/EMA/nan_to_num) on.
for run in "true 0" "false 0" "false 1"; do
  set -- $run; fp32=$1; fused=$2
  echo "--- --fp32 $fp32, STYLEFORGE_FUSED_KERNELS=$fused"
  STYLEFORGE_FUSED_KERNELS=$fused $SF bench $BENCH --aug ada --device $DEV --overlap on --fp32 $fp32 2>&1 \
    | grep -E "^bench:|overlap on|peak GPU memory|^sec/kimg" | tee $W/bench.txt
  grep -q "^sec/kimg" $W/bench.txt && echo "PASS: bench --fp32 $fp32" || { echo "FAIL: bench --fp32 $fp32"; fail=1; }
done
if [ -d "$REF" ] && [ -f tools/bench_reference.py ]; then
  $PY tools/bench_reference.py --reference "$REF" --styleforge $SF --device $DEV $REFB 2>&1 | tail -8 | tee $W/bench-ref.txt
  grep -q "^median ours/reference" $W/bench-ref.txt && echo "PASS: bench_reference" \
    || { echo "FAIL: bench_reference printed no median"; fail=1; }
else
  echo "no reference checkout ($REF; on a GPU machine tests/gpu/prepare.sh --reference): reference bench skipped"
fi

fi
step "done"
echo "gpu check: $([ $fail = 0 ] && echo ALL PASSED || echo FAILURES) in $(( $(date +%s) - t0 )) s"
exit $fail
