#!/usr/bin/env bash
# Where the gpt's training step goes on this machine (issue 13's workload: 4 layers, dim 128,
# context 128, tinyshakespeare, windows of 64 sequences): LibTorch's profiler over steps 3-5, summed
# by phase and operator (bench/profile_summary.py), for fixed micro-batches of 8 sequences, token-budget
# micro-batches of the same budget (tokens:1024), and bf16 autocast. Also the median step time of
# 12 steps of each.
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
text=${1:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
out=$(mktemp -d)
gpt=(--model gpt --data "text:$text" --layers 4 --heads 4 --dim 128 --context 128 --global-batch 64 --lr 1e-3
     --schedule constant --progress off)
declare -A runs=(
  [fixed-fp32]="--micro-batch 8"
  [tokens-fp32]="--micro-batching tokens:1024"
  [fixed-bf16]="--micro-batch 8 --precision bf16"
  [tokens-bf16]="--micro-batching tokens:1024 --precision bf16"
)
for name in fixed-fp32 tokens-fp32 fixed-bf16 tokens-bf16; do
  # shellcheck disable=SC2086
  build/gradacc train "${gpt[@]}" ${runs[$name]} --steps 12 --log "$out/$name.jsonl" >/dev/null
  # shellcheck disable=SC2086
  build/gradacc train "${gpt[@]}" ${runs[$name]} --steps 5 --profile "$out/$name.trace.json" >/dev/null
  python3 - "$out/$name.jsonl" "$name" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l][2:]
print(f"\n### {sys.argv[2]}: median step {statistics.median(r['seconds'] for r in rows) * 1e3:.0f} ms, "
      f"{statistics.median(r['tokens_per_s'] for r in rows):,.0f} real tokens/s, "
      f"padding {statistics.mean(r['padding_fraction'] for r in rows):.3f}, "
      f"{statistics.median(r['micro_batches'] for r in rows):.0f} micro-batches per window\n")
PY
  python3 bench/profile_summary.py "$out/$name.trace.json" --top 12
done
