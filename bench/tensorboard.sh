#!/usr/bin/env bash
# What --tensorboard costs (docs/tensorboard.md): the gpt of bench/gpt_step_times.sh (4 layers,
# dim 128, context 128, windows of 64 in micro-batches of 8, fp32) trained for STEPS optimizer steps
# with the JSONL log, without and with --tensorboard, alternating which goes first, REPS times each.
# Times the whole training loop (logging included: fit()'s wall time, not the steps' own), and
# prints the median seconds per step of each and their ratio. Run to run, this machine's step times
# spread by more than the writer costs, so the writer is also timed on its own
# (bench/tensorboard_cost.cc: RunLog::step with and without the event file, in alternating blocks)
# and set against the gpt's median step.
#
#   bench/tensorboard.sh [REPS] [STEPS] [TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
cmake --build build --target gradacc_bench_tensorboard >/dev/null
reps=${1:-5}
steps=${2:-40}
text=${3:-../shared/data/tinyshakespeare.txt}
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
gpt=(--model gpt --data "text:$text" --layers 4 --heads 4 --dim 128 --context 128 --lr 1e-3 --schedule constant
     --clip 0 --threads 2 --progress off --global-batch 64 --micro-batch 8 --steps "$steps" --log "$d/log.jsonl")
run() {  # run off|on: seconds per step of the training loop
  local extra=()
  [ "$1" = on ] && extra=(--tensorboard "$d/tb")
  rm -rf "$d/tb"
  build/gradacc train "${gpt[@]}" "${extra[@]}" | sed -n 's/.*optimizer steps in \([0-9.]*\) s.*/\1/p' \
    | awk -v n="$steps" '{ printf "%.5f\n", $1 / n }'
}
: >"$d/off"; : >"$d/on"
for rep in $(seq "$reps"); do
  if [ $((rep % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do
    t=$(run "$mode")
    echo "$t" >>"$d/$mode"
    echo "rep $rep  tensorboard $mode  $(awk '{ printf "%.1f", $1 * 1000 }' <<<"$t") ms/step"
  done
done
build/gradacc_bench_tensorboard "$d/cost" 20000 | tee "$d/cost.txt"
python3 - "$d/off" "$d/on" "$steps" "$d/cost.txt" <<'PY'
import re, statistics, sys
off = [float(x) for x in open(sys.argv[1])]
on = [float(x) for x in open(sys.argv[2])]
mo, mn = statistics.median(off), statistics.median(on)
print(f"median over {len(off)} runs of {sys.argv[3]} steps: without {mo * 1e3:.2f} ms/step, with --tensorboard "
      f"{mn * 1e3:.2f} ms/step, ratio {mn / mo:.4f} ({(mn / mo - 1) * 100:+.2f}%); fastest runs: "
      f"{min(off) * 1e3:.2f} and {min(on) * 1e3:.2f} ms/step")
jsonl, both = (float(x) for x in re.findall(r"([0-9.]+) us", open(sys.argv[4]).read()))
print(f"the event file's own cost: {both - jsonl:.2f} us per step = {(both - jsonl) * 1e-6 / mo * 100:.4f}% of the "
      f"gpt's median step")
PY
