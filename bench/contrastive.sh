#!/usr/bin/env bash
# The contrastive job, measured (docs/contrastive.md): builds gradacc, runs bench/contrastive.py.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
exec python3 bench/contrastive.py "$@"
