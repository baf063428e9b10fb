#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages named as arguments that are not installed yet (apt-get, as
# root or through sudo); prints nothing and touches nothing when all are present. Without root
# and without sudo it names what is missing and exits 1 (see README, "Installing without root").
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "missing packages (no root, no sudo): ${missing[*]}" >&2
    echo "provide them another way (Spack, conda, modules) and pass -DCMAKE_PREFIX_PATH to CMake: see README, \"Installing without root\"" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
