#!/usr/bin/env bash
# Gradients on a 16-bit wire (--comm-dtype bf16|fp16, DeepSpeed's communication_data_type;
# sync/compressed_reducer.h), with real processes, 2 ranks (Gloo):
#   1. the cnn with SGD, 6 steps: each 16-bit run against the fp32 one. Losses, sample and item
#      counts are logged the same to the last bit at every step (they travel exactly); the first
#      step's gradient norm within 0.5%; the weights within 2e-4; the gradient bytes halved;
#   2. every way gradients travel: overlapped buckets, the whole buffer at once, every micro-batch,
#      ZeRO-1's reduce-scatter, ZeRO-2's reduces to owners, ZeRO-3's (and its no_sync window): each
#      within 2e-4 of fp32 plain data parallel;
#   3. one process: a note, and the same weights as fp32; bad input gets one line: an unknown dtype,
#      by flag and by DeepSpeed key.
# Usage: comm_dtype.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: comm_dtype.sh gradacc python}
PY=${2:?usage: comm_dtype.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within, bad

c=(--model cnn --train-limit 1024 --global-batch 64 --micro-batch 16 --steps 6 --optimizer sgd --momentum 0.9
  --lr 0.05 --threads 1 --seed 5 --progress off)
run_world 2 "$D/fp32.safetensors" "$D/fp32.jsonl" "${c[@]}"
for dt in bf16 fp16; do
  run_world 2 "$D/$dt.safetensors" "$D/$dt.jsonl" "${c[@]}" --comm-dtype "$dt"
  "$PY" - "$D/fp32.jsonl" "$D/$dt.jsonl" "$dt" <<'PY' || fail "$dt: the logs"
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"step"' in l] for p in sys.argv[1:3])
assert len(a) == len(b) == 6
assert a[0]["loss"] == b[0]["loss"], (a[0]["loss"], b[0]["loss"])  # before any rounded gradient
for x, y in zip(a, b):
    assert (x["samples"], x["items"]) == (y["samples"], y["items"]), (x, y)
rel = abs(b[0]["grad_norm"] / a[0]["grad_norm"] - 1)
assert rel < 5e-3, rel
ratio = b[0]["allreduce_bytes"] / a[0]["allreduce_bytes"]
assert 0.49 < ratio < 0.52, ratio
print(f"{sys.argv[3]} on the wire: step 1 loss identical, counts identical at every step, grad norm {rel:.2e} "
      f"from fp32's, gradient bytes {b[0]['allreduce_bytes']} of {a[0]['allreduce_bytes']} ({ratio:.3f})")
PY
  within "$D/$dt.safetensors" "$D/fp32.safetensors" 2e-4 "$dt vs fp32, 2 ranks, 6 SGD steps"
done

for way in "--overlap off" "--sync every-micro-batch" "--zero 1" "--zero 2" "--zero 3" \
  "--zero 3 --accumulate-unsharded on"; do
  # shellcheck disable=SC2086
  run_world 2 "$D/way.safetensors" "$D/way.jsonl" "${c[@]}" --comm-dtype bf16 $way
  within "$D/way.safetensors" "$D/fp32.safetensors" 2e-4 "bf16 with $way vs fp32"
done

run_world 1 "$D/w1.safetensors" "$D/w1.jsonl" "${c[@]}" --comm-dtype bf16
grep -q "note: comm_dtype bf16 applies to data parallel" "$D/out.txt" || fail "world 1: no note: $(cat "$D/out.txt")"
run_world 1 "$D/w1f.safetensors" "$D/w1f.jsonl" "${c[@]}"
within "$D/w1.safetensors" "$D/w1f.safetensors" 0 "one process, bf16 asked vs fp32"

bad "comm-dtype" --steps 1 --comm-dtype int8
echo '{"train_batch_size": 64, "communication_data_type": "int8"}' >"$D/ds.json"
bad "communication_data_type" --config "$D/ds.json" --steps 1
echo "comm_dtype: all checks passed"
