#!/usr/bin/env bash
# Everything styleforge needs to build, test and run on Debian 12 (scripts/install-build-deps.sh,
# then scripts/install-test-deps.sh). Idempotent: prints nothing and touches nothing when all is present.
set -euo pipefail
cd "$(dirname "$0")"
bash install-build-deps.sh
bash install-test-deps.sh
