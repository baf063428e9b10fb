#!/usr/bin/env bash
# A build whose dependencies come from a user prefix, as on a cluster without root (Spack, conda,
# environment modules): nlohmann-json and ISA-L are installed into a prefix of their own (their
# files copied out of the system packages, then hidden from the system search with
# CMAKE_IGNORE_PREFIX_PATH), CMake is given only -DCMAKE_PREFIX_PATH=PREFIX, and the test checks
# that the configured build found them there and builds the torch-free libraries and the data tests.
# Usage: build_from_prefix.sh SOURCE_DIR
set -euo pipefail
SRC=${1:?usage: build_from_prefix.sh SOURCE_DIR}
W=$(mktemp -d /tmp/sf_prefix.XXXXXX)
trap 'rm -rf "$W"' EXIT
P="$W/prefix"
fail() { echo "FAIL: $*"; exit 1; }

# "Install" the two dependencies into the prefix: headers, library, CMake package files.
mkdir -p "$P/include" "$P/lib" "$P/share/cmake"
json_cfg=$(dirname "$(find /usr/share/cmake /usr/lib/cmake /usr/lib/x86_64-linux-gnu/cmake -name nlohmann_jsonConfig.cmake 2>/dev/null | head -1)")
[ -d "$json_cfg" ] || fail "nlohmann_jsonConfig.cmake not found on this system"
cp -r /usr/include/nlohmann "$P/include/"
cp -r "$json_cfg" "$P/share/cmake/nlohmann_json"
# The system's config points at /usr/include: make it relative to the prefix it now lives in.
{ grep -rl "/usr/include" "$P/share/cmake/nlohmann_json" || true; } | xargs -r sed -i "s|/usr/include|$P/include|g"
cp -r /usr/include/isa-l "$P/include/"
cp -P /usr/lib/x86_64-linux-gnu/libisal.so* "$P/lib/"

# Configure with the prefix, the system copies of both hidden so that a fallback cannot pass.
cmake -S "$SRC" -B "$W/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTYLEFORGE_DATA_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_IGNORE_PATH="/usr/include/isa-l;/usr/lib/x86_64-linux-gnu/cmake/nlohmann_json;/usr/share/cmake/nlohmann_json" \
  > "$W/configure.log" 2>&1 || { tail -20 "$W/configure.log"; fail "configure with -DCMAKE_PREFIX_PATH=$P"; }
cache="$W/build/CMakeCache.txt"
grep -q "^nlohmann_json_DIR:PATH=$P/" "$cache" || fail "nlohmann_json not taken from the prefix: $(grep '^nlohmann_json_DIR' "$cache")"
grep -q "^ISAL_INCLUDE_DIR:PATH=$P/include" "$cache" || fail "ISA-L headers not taken from the prefix: $(grep '^ISAL_INCLUDE_DIR' "$cache")"
grep -q "^ISAL_LIBRARY:FILEPATH=$P/lib/libisal.so" "$cache" || fail "ISA-L library not taken from the prefix: $(grep '^ISAL_LIBRARY' "$cache")"
echo "ok: configured with nlohmann-json and ISA-L from $P"

# Build and run the torch-free data tests against the prefix's library.
cmake --build "$W/build" -j "${JOBS:-2}" --target styleforge_tests > "$W/build.log" 2>&1 || { tail -20 "$W/build.log"; fail "build"; }
ldd "$W/build/styleforge_tests" | grep -q "libisal.so.* => $P/lib/" || \
  echo "note: styleforge_tests resolves libisal at run time to $(ldd "$W/build/styleforge_tests" | grep libisal)"
"$W/build/styleforge_tests" --gtest_brief=1 --gtest_filter='DataRobust.PackCrc*:DataPack*' > "$W/test.log" 2>&1 || { tail -20 "$W/test.log"; fail "data tests"; }
echo "ok: torch-free libraries built and data tests passed with dependencies from the prefix"
