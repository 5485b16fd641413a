#!/usr/bin/env bash
# The learning rate that follows the batch: the experiments of docs/lr-scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/lr_scaling.py "$@"
