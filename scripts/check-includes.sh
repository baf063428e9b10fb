#!/usr/bin/env bash
# Build-cost rule: no header includes <torch/torch.h>, and data/, sharding/ and launcher/ include no
# torch, ATen or c10 header at all. Exits 1 and names the offending files otherwise.
set -u
cd "$(dirname "$0")/.."
bad=$(grep -lE '^\s*#\s*include\s*[<"]torch/torch\.h[>"]' $(git ls-files '*.h' '*.hpp') 2>/dev/null)
free=$(grep -lE '^\s*#\s*include\s*[<"](torch|ATen|c10)/' $(git ls-files 'data/*' 'sharding/*' 'launcher/*') 2>/dev/null)
if [ -n "$bad$free" ]; then
  [ -n "$bad" ] && echo "headers including <torch/torch.h>: $bad"
  [ -n "$free" ] && echo "torch headers in torch-free folders: $free"
  exit 1
fi
echo "include rules hold: $(git ls-files '*.h' | wc -l) headers checked"
