#!/usr/bin/env bash
# Data parallel at world 2 on this machine (docs/distributed.md): the gpt of issue 15 (6 layers,
# dim 256, context 128) with the window's all-reduce at the boundary (--overlap off), started
# bucket by bucket during the last backward (--overlap on), and ZeRO-1 (--zero 1: reduce-scatter,
# shard step, all-gather). Each repetition runs every setting once (interleaved: this machine is
# noisy), 10 steps each, with buckets of 4 MiB (the model's gradient is 19 MiB: several buckets to
# overlap); prints the median step and boundary time of steps 3-10, samples/s, and rank 0's peak
# tensor memory and optimizer-state bytes.
#
#   bench/zero_overlap.sh [REPS] [TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
reps=${1:-2}
text=${2:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
gpt=(--model gpt --data "text:$text" --layers 6 --heads 4 --dim 256 --context 128 --lr 1e-3 --schedule constant
     --clip 1 --threads 1 --progress off --steps 10 --micro-batch 8 --accum 4 --bucket-mb 4)
settings=(
  "overlap off|--overlap off"
  "overlap on|--overlap on"
  "zero 1|--zero 1"
)
for rep in $(seq "$reps"); do
  for s in "${settings[@]}"; do
    # shellcheck disable=SC2086
    build/gradacc launch --nproc 2 --master-port $((20000 + RANDOM % 20000)) -- train "${gpt[@]}" ${s#*|} \
      --log "$dir/log.jsonl" >"$dir/out.txt" 2>&1 || { tail -3 "$dir/out.txt"; exit 1; }
    python3 - "$dir/log.jsonl" "$dir/out.txt" "$rep" "${s%%|*}" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l][2:]
out = open(sys.argv[2]).read()
memory = re.search(r"\[rank 0\] peak tensor memory (\S+ \S+); optimizer state (\S+ \S+)", out)
step = statistics.median(r["seconds"] for r in rows)
print(f"rep {sys.argv[3]}  {sys.argv[4]:12} step {step * 1e3:6.0f} ms  boundary "
      f"{statistics.median(r['boundary_seconds'] for r in rows) * 1e3:5.1f} ms  {rows[0]['samples'] / step:6.1f} samples/s  "
      f"collectives/step {rows[0]['allreduce_calls']}  peak {memory.group(1)}  optimizer state {memory.group(2)}")
PY
  done
done
