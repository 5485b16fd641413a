#!/usr/bin/env bash
# One command for the benchmark: builds gradacc, makes sure the Python peers' packages are there
# (accelerate, in the same cached venv as the pinned torch), then runs bench/run.py.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
py=$(scripts/setup.sh | tail -n 1)
"$py" -c "import accelerate" 2>/dev/null || "$py" -m pip install -q --disable-pip-version-check accelerate >&2
exec "$py" bench/run.py "$@"
