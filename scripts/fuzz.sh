#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/, ASan + UBSan) with clang and runs every target.
#   bash scripts/fuzz.sh                 # short run: 30 s per target (what CI does: ctest -L fuzz)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh            # the documented long run: >= 10 min per target
#   FUZZ_SECONDS=600 FUZZ_TARGETS="nifti pack" bash scripts/fuzz.sh
#   FUZZ_SKIP_DEPS=1 ...                 # do not run scripts/install-deps.sh first
# Installs clang and libclang-rt-14-dev (libFuzzer, sanitizer runtimes) when missing; the default
# build does not need them. Prints one line per target with its executions; exits 1 on a finding
# (the reproducer is build-fuzz/fuzz/crash-<target>-*).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FUZZ_SKIP_DEPS:-}" ] || bash scripts/install-deps.sh
need=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
BUILD="${STYLEFORGE_FUZZ_BUILD:-build-fuzz}"
SECONDS_PER="${FUZZ_SECONDS:-30}"
TARGETS="${FUZZ_TARGETS:-image zip npy tfrecord nifti dicom pack pickle}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DSTYLEFORGE_DATA_ONLY=ON -DSTYLEFORGE_FUZZ=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target fuzz_make_seeds $(for t in $TARGETS; do echo "fuzz_$t"; done)
FIX="${STYLEFORGE_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
"$BUILD/tests/fuzz/fuzz_make_seeds" "$BUILD/fuzz/seeds" "$FIX"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in $TARGETS; do
  mkdir -p "$BUILD/fuzz/corpus/$t"
  log="$BUILD/fuzz/$t.log"
  set +e
  "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_PER" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$BUILD/fuzz/crash-$t-" \
    "$BUILD/fuzz/corpus/$t" "$BUILD/fuzz/seeds/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -h "stat::number_of_executed_units" "$log" 2>/dev/null | awk '{s += $2} END {print s + 0}')
  echo "fuzz_$t: ${SECONDS_PER} s, ${execs} executions, exit ${rc} (log $log)"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
