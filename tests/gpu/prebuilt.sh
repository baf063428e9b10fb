# Prebuilt binaries for the GPU check (sourced by tests/gpu/prepare.sh and tests/gpu/check.sh).
#
# A device call has a few minutes of GPU time in all, and building there costs about four of them.
# prepare.sh --prebuilt BUILD_DIR (on a CPU machine with the CUDA LibTorch of this project's build)
# strips styleforge and styleforge_tests into .gpudeps/prebuilt/ with a manifest: the hash of the
# sources they were built from and the torch version they were linked against. check.sh uses them
# only when, on the GPU machine, the carried sources have that hash, python3's torch is that
# version, and every library they need resolves (the carried Debian libraries, the machine's torch
# and its nvidia-* libraries); otherwise it builds there as before.

# Hash of the files a build reads (sources, headers, CUDA, CMake), the same on both machines: the
# device copy holds the tracked and untracked-not-ignored files, so the build folders (top-level
# build*/, ignored) are outside the folders hashed here.
sf_source_hash() {
  local root=${1:-.}
  (cd "$root" && find CMakeLists.txt trainer sharding data launcher metrics tests scripts -type f \
      \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cmake' -o -name CMakeLists.txt \) \
      -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# Library folders of the torch that `python` imports: torch/lib and the nvidia-* wheels' lib folders
# (libcudart, NCCL, cuDNN, ...), colon-separated.
sf_torch_lib_path() {
  "${1:-python3}" - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
dirs = [os.path.join(os.path.dirname(torch.__file__), "lib")]
dirs += sorted({os.path.dirname(p) for p in glob.glob(os.path.join(site, "nvidia", "**", "lib*.so*"), recursive=True)})
print(":".join(dirs))
PY
}

sf_torch_version() { "${1:-python3}" -c 'import torch; print(torch.__version__)'; }

# sf_write_prebuilt BUILD_DIR PYTHON DEST: strip the two binaries into DEST with the manifest.
sf_write_prebuilt() {
  local build=$1 py=$2 dest=$3
  for b in styleforge styleforge_tests; do
    [ -x "$build/$b" ] || { echo "prebuilt: $build/$b is missing (build it first)" >&2; return 1; }
  done
  local home
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null)
  [ "$(readlink -f "${home:-/nonexistent}")" = "$(pwd -P)" ] \
    || { echo "prebuilt: $build is not a build of this checkout ($(pwd -P))" >&2; return 1; }
  grep -q "(CUDA build)" <("$build/styleforge" version 2>&1) || { echo "prebuilt: $build/styleforge is not a CUDA build" >&2; return 1; }
  local torch_lib linked
  torch_lib=$(sf_torch_lib_path "$py") || return 1
  torch_lib=${torch_lib%%:*}  # torch/lib, the first folder
  linked=$(ldd "$build/styleforge" | awk '$1 == "libtorch_cpu.so" {print $3}')
  [ "$(readlink -f "$linked")" = "$(readlink -f "$torch_lib/libtorch_cpu.so")" ] \
    || { echo "prebuilt: $build/styleforge links ${linked:-no libtorch_cpu.so}, not $py's torch ($torch_lib)" >&2; return 1; }
  rm -rf "$dest" && mkdir -p "$dest"
  strip -o "$dest/styleforge" "$build/styleforge" && strip -o "$dest/styleforge_tests" "$build/styleforge_tests" || return 1
  { echo "source_sha256=$(sf_source_hash .)"; echo "torch=$(sf_torch_version "$py")"; } > "$dest/manifest"
}

# sf_use_prebuilt SRC DEST [PYTHON]: copy the prebuilt binaries from SRC into DEST and extend
# LD_LIBRARY_PATH when they fit this machine; prints why not and returns 1 otherwise (DEST then
# holds no binaries).
sf_use_prebuilt() {
  local src=$1 dest=$2 py=${3:-python3} want have missing
  [ -f "$src/manifest" ] && [ -x "$src/styleforge" ] && [ -x "$src/styleforge_tests" ] \
    || { echo "prebuilt: none carried ($src)"; return 1; }
  want=$(sed -n 's/^source_sha256=//p' "$src/manifest"); have=$(sf_source_hash .)
  [ "$want" = "$have" ] || { echo "prebuilt: built from other sources ($want, these are $have)"; return 1; }
  want=$(sed -n 's/^torch=//p' "$src/manifest"); have=$(sf_torch_version "$py") \
    || { echo "prebuilt: $py does not import torch"; return 1; }
  [ "$want" = "$have" ] || { echo "prebuilt: linked against torch $want, this machine has $have"; return 1; }
  local libs
  libs=$(sf_torch_lib_path "$py") || return 1
  mkdir -p "$dest"
  cp "$src/styleforge" "$src/styleforge_tests" "$dest/"
  missing=$(LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" ldd "$dest/styleforge" "$dest/styleforge_tests" | grep "not found" | sort -u)
  if [ -n "$missing" ] || ! LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" "$dest/styleforge" version >/dev/null 2>&1; then
    echo "prebuilt: does not load here${missing:+: $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')}"
    rm -f "$dest/styleforge" "$dest/styleforge_tests"
    return 1
  fi
  export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
  echo "prebuilt: using the carried binaries (torch $have)"
}
