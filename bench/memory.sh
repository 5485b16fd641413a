#!/usr/bin/env bash
# The memory budget, measured (docs/memory.md): builds gradacc, runs bench/memory.py.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/memory.py "$@"
