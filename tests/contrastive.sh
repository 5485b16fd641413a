#!/usr/bin/env bash
# `gradacc train --objective contrastive` (docs/contrastive.md), with real processes:
#   1. the cnn embeds two augmented views of each Fashion-MNIST image; InfoNCE over the whole window
#      of 64 in micro-batches of 8; the log carries the cache's bytes; a linear probe scores it;
#   2. data parallel: world 2 × accumulation 4 × micro 8 against world 1 × accumulation 8 over the
#      same windows (each view's augmentation is seeded by its example, not by the rank): max |Δw|
#      within 1e-5, also under ZeRO-1 and ZeRO-2;
#   3. a memory budget plans around the cache and every step keeps it; one too small for the cache
#      of the window is refused naming a global batch that fits;
#   4. bad input gets one line: text data, --eval-every, ZeRO-3, a temperature ≤ 0, an unknown
#      objective.
# Usage: contrastive.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: contrastive.sh gradacc python}
PY=${2:?usage: contrastive.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within, bad

c=(--objective contrastive --model cnn --train-limit 1024 --global-batch 64 --micro-batch 8 --steps 4 --lr 3e-3
  --threads 1 --seed 4 --progress off)
run_world 1 "$D/w1.safetensors" "$D/w1.jsonl" "${c[@]}"
grep -q "linear-probe test accuracy" "$D/out.txt" || fail "no linear probe: $(cat "$D/out.txt")"
"$PY" - "$D/w1.jsonl" <<'PY' || fail "the contrastive log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if "step" in r]
probe = [r for r in rows if "linear_probe_accuracy" in r]
assert len(steps) == 4 and all(r["cache_bytes"] == 64 * (2 * 784 * 4 + 8) + 64 * 2 * 64 * 4 + 64 * 64 * 4 * 4 for r in steps), steps[0]
assert probe and 0.1 < probe[0]["linear_probe_accuracy"] <= 1, probe
print(f"contrastive cnn: window loss {steps[0]['loss']:.3f} → {steps[-1]['loss']:.3f}, cache {steps[0]['cache_bytes']} "
      f"bytes per window, linear probe {probe[0]['linear_probe_accuracy']:.3f} after 4 steps")
PY
run_world 2 "$D/w2.safetensors" "$D/w2.jsonl" "${c[@]}"
within "$D/w2.safetensors" "$D/w1.safetensors" 1e-5 "contrastive: world 2 × accum 4 vs world 1 × accum 8"
for z in 1 2; do  # sharded optimizer state, and gradients: pass 3 goes through the same accumulator
  run_world 2 "$D/z$z.safetensors" "$D/z$z.jsonl" "${c[@]}" --zero "$z"
  within "$D/z$z.safetensors" "$D/w1.safetensors" 1e-5 "contrastive: world 2 × accum 4 under --zero $z vs world 1"
done

bad "embeds images" --objective contrastive --model gpt --data text:/usr/share/common-licenses/GPL-3 --steps 1
bad "eval-every evaluates a classifier" "${c[@]}" --eval-every 2
b=(--objective contrastive --model cnn --threads 1 --seed 4 --progress off --memory-budget 300MiB)
bad "cannot hold the window loss's cache for a global batch of 8192" "${b[@]}" --global-batch 8192 --train-limit 8192
# A budget the cache fits in: planned with it, and every step's peak within the budget.
"$G" train "${b[@]}" --global-batch 512 --train-limit 2048 --steps 2 --log "$D/budget.jsonl" >"$D/budget.out" 2>&1 || fail "a window loss under a budget: $(cat "$D/budget.out")"
"$PY" - "$D/budget.jsonl" <<'PY' || fail "the window loss's budget was not kept"
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if "step" in r]
assert steps and all(r["peak_bytes"] <= 300 << 20 and r["micro_batch"] < 512 for r in steps), steps
print(f"window 512 under 300 MiB: micro-batch {steps[0]['micro_batch']}, peak {steps[0]['peak_mb']:.1f} MiB, "
      f"cache {steps[0]['cache_bytes']} bytes")
PY
bad "temperature must lie in" "${c[@]}" --temperature 0
bad "is not classify or contrastive" --objective siamese --steps 1
bad "belong to --objective contrastive" --negatives micro-batch --steps 1
bad "the contrastive objective has none" "${c[@]}" --label-smoothing 0.1
"$G" launch --nproc 2 -- train "${c[@]}" --zero 3 >"$D/bad.out" 2>&1 && fail "zero 3 ran"
grep -q "does not support ZeRO-3" "$D/bad.out" || fail "zero 3: $(cat "$D/bad.out")"
echo "--zero 3 at world 2: $(grep -o 'error: .*' "$D/bad.out" | head -1)"
echo "contrastive: all checks passed"
