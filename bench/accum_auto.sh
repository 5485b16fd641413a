#!/usr/bin/env bash
# The cost to reach a fixed test loss with small, large and automatic accumulation (docs/noise-scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/accum_auto.py "$@"
