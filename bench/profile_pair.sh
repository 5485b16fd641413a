#!/usr/bin/env bash
# gradacc and the seed loop profiled side by side on bench/run.py's gpt (4 layers, dim 128,
# context 128, the same initial weights), fixed micro-batches of MICRO (default 16) sequences,
# accumulation 8, 2 threads: LibTorch's profiler over optimizer steps 3-5 of each, then the
# operators whose call counts differ (bench/trace_compare.py) and each loop's time by operator
# group (bench/profile_summary.py).
#   bench/profile_pair.sh [MICRO]
set -euo pipefail
cd "$(dirname "$0")/.."
micro=${1:-16}
make build >/dev/null
py=$(scripts/setup.sh | tail -n 1)
text=../shared/data/tinyshakespeare.txt
[ -f "$text" ] || text=/usr/share/common-licenses/GPL-3
out=$(mktemp -d)
"$py" -c "import sys; sys.argv = ['run']; sys.path.insert(0, 'bench'); import run; run.write_init('gpt', '$out/gpt.safetensors')"
common=(--model gpt --init "$out/gpt.safetensors" --micro-batch "$micro" --accum 8 --steps 6 --threads 2 --lr 1e-3
        --data "text:$text" --context 128)
build/gradacc train "${common[@]}" --optimizer adamw --weight-decay 0.01 --schedule constant --clip 0 --layers 4 \
  --heads 4 --dim 128 --progress off --profile "$out/gradacc.json" >/dev/null
"$py" bench/peers.py --loop seed "${common[@]}" --warmup 2 --norm layer --profile "$out/seed.json" 2>/dev/null | tail -n 1
"$py" bench/trace_compare.py "$out/gradacc.json" "$out/seed.json" --names gradacc,seed --top 12
for loop in gradacc seed; do
  echo "### $loop"
  "$py" bench/profile_summary.py "$out/$loop.json" --top 6
done
