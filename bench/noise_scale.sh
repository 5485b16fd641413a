#!/usr/bin/env bash
# The gradient noise scale over training and its overhead (docs/noise-scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/noise_scale.py "$@"
