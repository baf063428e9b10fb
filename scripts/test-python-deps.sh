#!/usr/bin/env bash
# Installs the pinned Python packages that tests need beside torch and numpy into the torch
# virtual environment (scripts/torch-env.sh prints it; $STYLEFORGE_TEST_PYTHON overrides):
#   tensorboard  tests/tb_check.py reads our event files with TensorBoard's own reader
#   click, Pillow, requests, scipy  what a stylegan2-ada-pytorch checkout imports to load network
#                pickles and run its generate.py (the export test, $STYLEFORGE_REFERENCE)
#   selenium     tests/vtt_click.py drives headless Chromium through the Visual Turing Test page
#   scikit-learn  tests/tsne_check.py compares our PCA and t-SNE maps with its PCA, TSNE and trustworthiness
# Idempotent and quiet: nothing is fetched when the pinned versions are there already.
set -euo pipefail
py="${STYLEFORGE_TEST_PYTHON:-$(bash "$(dirname "$0")/torch-env.sh")}"
pins=(tensorboard==2.20.0 click==8.1.8 pillow==11.3.0 requests==2.32.3 scipy==1.15.3 selenium==4.50.0 scikit-learn==1.7.2)
missing=()
for p in "${pins[@]}"; do
  name="${p%%==*}" want="${p##*==}"
  have="$("$py" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
  [ "$have" = "$want" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-python-deps: installing ${missing[*]} into $("$py" -c 'import sys; print(sys.prefix)')" >&2
  "$py" -m pip install --quiet --no-cache-dir --disable-pip-version-check "${missing[@]}" >&2
fi
