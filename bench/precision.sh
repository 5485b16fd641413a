#!/usr/bin/env bash
# Mixed precision against fp32 (loss curves and speed): builds gradacc, runs bench/precision.py.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/precision.py "$@"
