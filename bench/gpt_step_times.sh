#!/usr/bin/env bash
# Interleaved step times of the gpt (4 layers, dim 128, context 128, tinyshakespeare) in several
# settings (docs/benchmarks.md): fp32 against bf16 autocast, fixed 8-sequence micro-batches against
# tokens:1024 (windows of 64), and tokens:2048 without and with packing (windows of 128). Each
# repetition runs every setting once, 10 steps each; prints the median step of steps 3-10.
#
#   bench/gpt_step_times.sh [REPS] [TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
reps=${1:-3}
text=${2:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
gpt=(--model gpt --data "text:$text" --layers 4 --heads 4 --dim 128 --context 128 --lr 1e-3 --schedule constant
     --clip 0 --threads 2 --progress off --steps 10)
settings=(
  "fixed fp32|--global-batch 64 --micro-batch 8"
  "fixed bf16|--global-batch 64 --micro-batch 8 --precision bf16"
  "tokens:1024 fp32|--global-batch 64 --micro-batching tokens:1024"
  "tokens:1024 bf16|--global-batch 64 --micro-batching tokens:1024 --precision bf16"
  "tokens:2048|--global-batch 128 --micro-batching tokens:2048"
  "tokens:2048 packed|--global-batch 128 --micro-batching tokens:2048 --packing on"
)
for rep in $(seq "$reps"); do
  for s in "${settings[@]}"; do
    # shellcheck disable=SC2086
    build/gradacc train "${gpt[@]}" ${s#*|} --log "$log" >/dev/null
    python3 - "$log" "$rep" "${s%%|*}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l][2:]
print(f"rep {sys.argv[2]}  {sys.argv[3]:20} {statistics.median(r['seconds'] for r in rows) * 1e3:6.0f} ms/step  "
      f"{statistics.median(r['tokens_per_s'] for r in rows):8.0f} real tokens/s")
PY
  done
done
