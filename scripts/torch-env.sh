#!/usr/bin/env bash
# Prints the Python interpreter whose `torch` package provides LibTorch for the build, installing it
# first when needed. LibTorch comes from PyTorch's PyPI wheel (its CUDA 13 build), as users of this
# field have it; CMake finds it through `torch.utils.cmake_prefix_path`.
#
# Order: $STYLEFORGE_PYTHON when set; else the first `python3` on PATH when it imports torch >= 2.6
# (e.g. a GPU machine's own PyTorch); else a virtual environment at $STYLEFORGE_VENV (default
# ~/.cache/styleforge/venv-torch-$STYLEFORGE_TORCH_VERSION), created and filled with the pinned wheel
# on first use (~3 GB with its nvidia-* CUDA libraries; reused by every later build and clone).
#   bash scripts/torch-env.sh             # prints e.g. /root/.cache/styleforge/venv-torch-2.11.0/bin/python
#   bash scripts/torch-env.sh --prefix    # prints torch.utils.cmake_prefix_path
set -euo pipefail
TORCH_VERSION="${STYLEFORGE_TORCH_VERSION:-2.11.0}"
VENV="${STYLEFORGE_VENV:-$HOME/.cache/styleforge/venv-torch-$TORCH_VERSION}"
usable() {  # a Python whose torch is 2.6 or newer
  "$1" - <<'PY' >/dev/null 2>&1
import torch, sys
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 6) else 1)
PY
}
py=""
if [ -n "${STYLEFORGE_PYTHON:-}" ]; then
  usable "$STYLEFORGE_PYTHON" || { echo "torch-env: \$STYLEFORGE_PYTHON=$STYLEFORGE_PYTHON has no torch >= 2.6" >&2; exit 1; }
  py="$STYLEFORGE_PYTHON"
elif command -v python3 >/dev/null && usable "$(command -v python3)"; then
  py="$(command -v python3)"
else
  if ! usable "$VENV/bin/python" 2>/dev/null; then
    echo "installing torch==$TORCH_VERSION (PyPI, CUDA 13 build) into $VENV" >&2
    base="$(command -v python3)"
    mkdir -p "$(dirname "$VENV")"
    "$base" -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "torch==$TORCH_VERSION" numpy >&2
  fi
  py="$VENV/bin/python"
fi
if [ "${1:-}" = "--prefix" ]; then
  "$py" -c 'import torch; print(torch.utils.cmake_prefix_path)'
else
  echo "$py"
fi
