#!/usr/bin/env bash
# ZeRO-3 at world 2 on this machine (docs/zero.md): the gpt of 6 layers, width 256 (4.8 M
# parameters), context 64, micro-batches of 4 × 4 per rank, against ZeRO-2 and plain data parallel.
# ZeRO-3 with prefetch on and off (the next unit's all-gather started while one computes), and
# without resharding after the forward, and accumulating unsharded (FSDP's no_sync: units kept for
# the window, the gradient reduced once), beside ZeRO-1 (the same traffic). Each repetition runs every setting once (interleaved: this
# machine is noisy), 8 steps each; prints the median step time of steps 3-8, all-gathers and
# collectives per window, and rank 0's peak tensor memory and static bytes.
#
#   bench/zero3.sh [REPS] [TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
reps=${1:-2}
text=${2:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
gpt=(--model gpt --data "text:$text" --layers 6 --heads 4 --dim 256 --context 64 --lr 1e-3 --schedule constant
     --clip 1 --threads 1 --progress off --steps 8 --micro-batch 4 --accum 4 --seed 1)
settings=(
  "plain|--zero 0"
  "zero 2|--zero 2"
  "zero 3|--zero 3"
  "zero 3 no prefetch|--zero 3 --prefetch off"
  "zero 3 keep to bwd|--zero 3 --reshard-after-forward off"
  "zero 3 no_sync|--zero 3 --accumulate-unsharded on"
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
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
m = re.search(r"\[rank 0\] peak tensor memory ([0-9.]+) (\w+); optimizer state ([0-9.]+) (\w+) on this rank; "
              r"gradient buffers ([0-9.]+) (\w+); parameters ([0-9.]+) (\w+)", out)
v = [float(m.group(i)) * unit[m.group(i + 1)] / unit["MiB"] for i in (1, 3, 5, 7)]
step = statistics.median(r["seconds"] for r in rows)
print(f"rep {sys.argv[3]}  {sys.argv[4]:19} step {step * 1e3:5.0f} ms  all-gathers {rows[0].get('parameter_gathers', 0):3}"
      f"  collectives {rows[0]['allreduce_calls']:4}  peak {v[0]:5.1f} MiB  static {sum(v[1:]):5.1f} MiB")
PY
  done
done
