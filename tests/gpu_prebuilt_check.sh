#!/usr/bin/env bash
# The choice tests/gpu/check.sh makes between the binaries carried in .gpudeps/prebuilt and a build
# on the GPU machine (tests/gpu/prebuilt.sh), run here on this build's own binaries:
#   - written from this build, they are used, load, and put torch's libraries on LD_LIBRARY_PATH;
#   - a manifest from other sources, another torch version, or a binary whose library is missing is
#     declined with its reason, and leaves no binary behind (check.sh then builds).
#   bash tests/gpu_prebuilt_check.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
SRC=$1 BUILD=$2
cd "$SRC"
. tests/gpu/prebuilt.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
expect() {  # expect NAME STATUS(0|1) PATTERN -- command...
  local name=$1 want=$2 pattern=$3; shift 4
  local out st
  out=$("$@" 2>&1); st=$?
  if [ $(( st != 0 )) -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL: $name (exit $st, wanted $([ "$want" = 0 ] && echo 0 || echo non-zero) and \"$pattern\"): $out"
    fail=1
  else
    echo "ok: $name: $(tail -1 <<<"$out")"
  fi
}

PY=$(bash scripts/torch-env.sh)
expect "written from this build" 0 "" -- sf_write_prebuilt "$BUILD" "$PY" "$T/pre"
grep -q "^source_sha256=$(sf_source_hash .)$" "$T/pre/manifest" || { echo "FAIL: manifest hash"; fail=1; }
grep -q "^torch=$(sf_torch_version "$PY")$" "$T/pre/manifest" || { echo "FAIL: manifest torch"; fail=1; }

# Used: in a subshell, so that its LD_LIBRARY_PATH can be looked at.
out=$(export LD_LIBRARY_PATH=/opt/nothing; sf_use_prebuilt "$T/pre" "$T/use" "$PY" && echo "LD=$LD_LIBRARY_PATH")
torch_lib=$(sf_torch_lib_path "$PY"); torch_lib=${torch_lib%%:*}
if grep -q "using the carried binaries" <<<"$out" && grep -q "^LD=$torch_lib:.*:/opt/nothing$" <<<"$out" \
   && cmp -s "$T/pre/styleforge" "$T/use/styleforge" && [ -x "$T/use/styleforge_tests" ]; then
  echo "ok: used when sources and torch match"
else
  echo "FAIL: not used although sources and torch match: $out"; fail=1
fi

declined() {  # declined NAME PATTERN: sf_use_prebuilt on $T/bad refuses with PATTERN, leaves nothing
  rm -rf "$T/dest"
  expect "$1" 1 "$2" -- sf_use_prebuilt "$T/bad" "$T/dest" "$PY"
  if [ -e "$T/dest/styleforge" ] || [ -e "$T/dest/styleforge_tests" ]; then echo "FAIL: $1 left a binary"; fail=1; fi
}
fresh_bad() { rm -rf "$T/bad"; cp -r "$T/pre" "$T/bad"; }

fresh_bad; sed -i 's/^source_sha256=.*/source_sha256=0000/' "$T/bad/manifest"
declined "other sources" "built from other sources"
fresh_bad; sed -i 's/^torch=.*/torch=1.13.1+cpu/' "$T/bad/manifest"
declined "other torch" "linked against torch 1.13.1+cpu"
fresh_bad; rm "$T/bad/styleforge_tests"
declined "incomplete" "none carried"

# A binary that needs a library this machine lacks.
mkdir -p "$T/lib"
echo 'int sf_missing_fn(void) { return 0; }' > "$T/lib/m.c"
echo 'int sf_missing_fn(void); int main(void) { return sf_missing_fn(); }' > "$T/main.c"
if cc -shared -fPIC -o "$T/lib/libsf_missing.so" "$T/lib/m.c" && cc -o "$T/needs" "$T/main.c" -L"$T/lib" -lsf_missing; then
  rm "$T/lib/libsf_missing.so"
  fresh_bad; cp "$T/needs" "$T/bad/styleforge"
  declined "missing library" "does not load here: libsf_missing.so"
else
  echo "FAIL: could not compile the test binary"; fail=1
fi

# Not a build, or the build of another checkout.
expect "no build folder" 1 "is missing" -- sf_write_prebuilt "$T" "$PY" "$T/x"
mkdir -p "$T/other" && ln -s "$(readlink -f "$BUILD")"/styleforge{,_tests} "$T/other/"
echo "CMAKE_HOME_DIRECTORY:INTERNAL=/elsewhere" > "$T/other/CMakeCache.txt"
expect "another checkout's build" 1 "not a build of this checkout" -- sf_write_prebuilt "$T/other" "$PY" "$T/x"
[ -e "$T/x" ] && { echo "FAIL: wrote a prebuilt folder from no build of this checkout"; fail=1; }
exit $fail
