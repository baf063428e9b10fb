#!/usr/bin/env bash
# Apptainer cannot run here; this keeps its definition file's %post on the steps CI runs: every
# script it calls exists and is called by scripts/test.sh (directly or through install-deps.sh),
# and the CMake options it passes are options the build defines.
set -euo pipefail
SRC=${1:?usage: apptainer_def_check.sh SOURCE_DIR}
DEF="$SRC/apptainer/styleforge.def"
fail() { echo "FAIL: $*"; exit 1; }
post=$(awk '/^%post/{on=1; next} /^%/{on=0} on' "$DEF")
[ -n "$post" ] || fail "$DEF has no %post section"
ci="$(cat "$SRC/scripts/test.sh" "$SRC/scripts/install-deps.sh")"
n=0
for s in $(grep -o 'scripts/[A-Za-z0-9_.-]*\.sh' <<<"$post" | sort -u); do
  [ -f "$SRC/$s" ] || fail "%post calls $s, which does not exist"
  grep -q "$(basename "$s")" <<<"$ci" || fail "%post calls $s, which CI (scripts/test.sh) does not run"
  n=$((n + 1))
done
[ "$n" -ge 2 ] || fail "%post should call the install and build scripts (found $n)"
for opt in $(grep -o '\-D[A-Z_]*=' <<<"$post" | tr -d '=' | cut -c3- | sort -u); do
  grep -q "$opt" "$SRC/CMakeLists.txt" || fail "%post passes -D$opt, which CMakeLists.txt does not define"
done
grep -q '^From: nvidia/cuda:13' "$DEF" || fail "base image is not NVIDIA's CUDA 13 image"
echo "ok: $DEF %post runs $n scripts that CI runs"
