#!/usr/bin/env bash
# Data parallel on one machine, world 2 × accumulation 8: all-reduce once per window against
# every micro-batch. Prints samples/s (after 3 warm-up steps), all-reduce calls and bytes per step.
# Usage: bench/distributed.sh [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
reps=${1:-2}
text=../shared/data/tinyshakespeare.txt
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for rep in $(seq "$reps"); do
  for sync in window every-micro-batch; do
    for wl in mlp gpt; do
      if [ "$wl" = mlp ]; then args=(--model mlp --train-limit 16384 --micro-batch 16)
      else args=(--model gpt --data "text:$text" --layers 2 --heads 4 --dim 128 --context 128 --micro-batch 4); fi
      log="$tmp/$wl-$sync-$rep.jsonl"
      build/gradacc launch --nproc 2 --master-port $((30000 + RANDOM % 1000)) -- train "${args[@]}" --accum 8 --steps 30 \
        --threads 1 --sync "$sync" --log "$log" >/dev/null
      python3 - "$log" "$wl" "$sync" "$rep" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l][3:]
rate = sum(r["samples"] for r in rows) / sum(r["seconds"] for r in rows)
print(f"{sys.argv[2]:4} {sys.argv[3]:18} rep {sys.argv[4]}: {rate:8.0f} samples/s, "
      f"{rows[0]['allreduce_calls']} all-reduce calls, {rows[0]['allreduce_bytes']} bytes per optimizer step")
PY
    done
  done
done
