#!/usr/bin/env bash
# --lr-scaling (docs/lr-scaling.md), with real runs of the gradacc command:
#   1. the logged learning rate of every step is the unscaled run's × k (linear) or × sqrt(k)
#      (sqrt), k = B/B0, within 1e-12 relative, through warmup and cosine decay; a linear run equals
#      an unscaled run whose --lr is base × k (weights within 1e-6);
#   2. an accumulation schedule: the factor changes exactly at the schedule's boundary;
#   3. resume, bit for bit, across a schedule change and under --accum auto (the run identity
#      carries the rule: a resume with another rule is refused in one line);
#   4. a resume at another world size changes the batch and the factor right there, and says so;
#      AdaScale: lr = schedule(Σ r of the updates before) × r, the run ends when Σ r reaches the
#      schedule's length, and resumes exactly;
#   5. bad input: a missing or non-positive base batch, an unknown rule.
# Usage: lr_scaling.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: lr_scaling.sh gradacc python}
PY=${2:?usage: lr_scaling.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within

run() {  # run name args...: train, saving NAME.safetensors and NAME.jsonl
  local name=$1; shift
  "$G" train "$@" --save "$D/$name.safetensors" --log "$D/$name.jsonl" >"$D/$name.out" 2>&1 \
    || fail "$name: $(tail -3 "$D/$name.out")"
}

factors() {  # factors scaled.jsonl plain.jsonl "k per step (python expression of s, 1-based)" label
  "$PY" - "$@" <<'PY' || fail "$4"
import json, math, sys
def steps(path):
    return [json.loads(l) for l in open(path) if '"step"' in l]
scaled, plain = steps(sys.argv[1]), steps(sys.argv[2])
assert len(scaled) == len(plain) > 0, (len(scaled), len(plain))
worst = 0.0
for a, b in zip(scaled, plain):
    s = a["step"]
    want = eval(sys.argv[3])
    assert abs(a["lr_scale"] - want) <= 1e-15 * want, (s, a["lr_scale"], want)
    worst = max(worst, abs(a["lr"] - b["lr"] * want) / (b["lr"] * want))
assert worst <= 1e-12, worst
print(f"{sys.argv[4]}: {len(scaled)} steps, logged lr = unscaled lr × factor within {worst:.1e} relative (1e-12)")
PY
}

# 1. The mlp, B = 64 (8 × 8), B0 = 16: k = 4; warmup 3 and cosine decay over 12 steps.
base=(--model mlp --train-limit 2048 --steps 12 --micro-batch 8 --accum 8 --schedule cosine --warmup 3 --threads 1
  --seed 5 --optimizer sgd --momentum 0.9)
run plain "${base[@]}" --lr 0.01
run linear "${base[@]}" --lr 0.01 --lr-scaling linear --base-batch 16
run sqrt "${base[@]}" --lr 0.01 --lr-scaling sqrt --base-batch 16
run by_hand "${base[@]}" --lr 0.04
factors "$D/linear.jsonl" "$D/plain.jsonl" "4.0" "linear, k = 4"
factors "$D/sqrt.jsonl" "$D/plain.jsonl" "2.0" "sqrt, k = 4"
within "$D/linear.safetensors" "$D/by_hand.safetensors" 1e-6 "linear × 4 vs an unscaled run at lr × 4"
d=$(max_diff "$D/linear.safetensors" "$D/plain.safetensors")
"$PY" -c "import sys; sys.exit(0 if $d > 1e-3 else 1)" || fail "scaling changed nothing: $d"
echo "linear vs unscaled: max |Δw| = $d (the factor is applied)"
# Per-token normalization on text: B counts tokens (samples × the longest example's tokens).
txt=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 --dim 32 --context 32 --steps 4
  --micro-batch 4 --accum 2 --threads 1 --seed 5)
run tok_plain "${txt[@]}"
run tok_sqrt "${txt[@]}" --lr-scaling sqrt --base-batch 64
factors "$D/tok_sqrt.jsonl" "$D/tok_plain.jsonl" "math.sqrt(8 * 32 / 64)" "gpt per token, B = 8 × 32 tokens, B0 = 64"

# 2. An accumulation schedule: 2 micro-batches for steps 0-4, then 8 (B = 16, then 64; B0 = 16).
sched=(--model mlp --train-limit 2048 --steps 10 --micro-batch 8 --accum-schedule 0:2,5:8 --schedule cosine
  --warmup 2 --threads 1 --seed 5 --lr 0.01)
run s_plain "${sched[@]}"
run s_linear "${sched[@]}" --lr-scaling linear --base-batch 16
factors "$D/s_linear.jsonl" "$D/s_plain.jsonl" "1.0 if s <= 5 else 4.0" "accumulation schedule 0:2,5:8, linear"

# 3. Resume: stopped at step 3 and continued, against the uninterrupted run, bit for bit.
resume_exact() {  # resume_exact label args...
  local label=$1; shift
  run full "$@"
  "$G" train "$@" --checkpoint-dir "$D/ck_$label" --stop-at 3 >"$D/half.out" 2>&1 || fail "$label: $(tail -3 "$D/half.out")"
  run resumed "$@" --resume "$D/ck_$label"
  within "$D/resumed.safetensors" "$D/full.safetensors" 0 "resume at step 3, $label"
  "$PY" - "$D/full.jsonl" "$D/resumed.jsonl" <<'PY' || fail "$label: the resumed lrs"
import json, sys
full = {r["step"]: r for r in map(json.loads, open(sys.argv[1])) if "step" in r}
for r in map(json.loads, open(sys.argv[2])):
    if "step" in r:
        assert r["lr"] == full[r["step"]]["lr"] and r["lr_scale"] == full[r["step"]]["lr_scale"], r["step"]
PY
}
resume_exact "across the schedule change (sqrt)" "${sched[@]}" --lr-scaling sqrt --base-batch 16
auto=(--model mlp --train-limit 4096 --steps 10 --micro-batch 8 --accum auto:16 --accum-auto-warmup 2 --accum-auto-every 2
  --threads 1 --seed 5 --lr 0.01 --lr-scaling sqrt --base-batch 16)
resume_exact "under --accum auto (sqrt)" "${auto[@]}"
"$PY" - "$D/full.jsonl" <<'PY' || fail "accum auto: the factor follows the batch"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
for r in rows:
    want = math.sqrt(8 * r["micro_batches"] / 16)
    assert abs(r["lr_scale"] - want) <= 1e-15 * want, (r["step"], r["lr_scale"], want)
print(f"  accum auto: the factor followed micro-batches {sorted({r['micro_batches'] for r in rows})}")
PY
"$G" train "${sched[@]}" --lr-scaling linear --base-batch 16 --resume "$D/ck_across the schedule change (sqrt)" \
  >"$D/other.out" 2>&1 && fail "a resume with another rule ran"
[ "$(grep -c "error" "$D/other.out")" = 1 ] \
  && grep -q "error: .*checkpoint belongs to another run: its lr_scaling is sqrt base 16, this run's is linear base 16" \
  "$D/other.out" || fail "another rule: $(cat "$D/other.out")"
echo "another rule at resume: $(grep -o 'error: .*' "$D/other.out" | sed 's/: .*checkpoint/: ... checkpoint/')"

# 4. World 2 × micro 8 × accum 2 (B = 32), stopped at step 3, continued at world 1 (B = 16): the
# factor (linear, B0 = 16) is 2 up to step 3 and 1 after, and the resume says so.
ws=(--model mlp --train-limit 2048 --steps 6 --micro-batch 8 --accum 2 --threads 1 --seed 5 --lr 0.01 --lr-scaling linear
  --base-batch 16)
"$G" launch --nproc 2 -- train "${ws[@]}" --checkpoint-dir "$D/ckw" --stop-at 3 --log "$D/w2.jsonl" \
  >"$D/w2.out" 2>&1 || fail "world 2: $(tail -3 "$D/w2.out")"
run w1 "${ws[@]}" --resume "$D/ckw"
grep -q "note: lr scaling linear: the batch is 16 at this resume (32 at the checkpoint), so the learning rate's factor changes here from 2 to 1" \
  "$D/w1.out" || fail "the resume's note: $(cat "$D/w1.out")"
"$PY" - "$D/w2.jsonl" "$D/w1.jsonl" <<'PY' || fail "world size resume: the factors"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
b = [json.loads(l) for l in open(sys.argv[2]) if '"step"' in l]
assert [r["lr_scale"] for r in a] == [2.0] * 3 and [r["lr_scale"] for r in b] == [1.0] * 3, (a, b)
print("world 2 → world 1: lr_scale 2, 2, 2, then 1, 1, 1")
PY
grep -o "note: lr scaling.*" "$D/w1.out"

# 4b. AdaScale (SGD with momentum, B = 256 = 8 × B0): each update's lr is the cosine schedule read at
# the position Σ r of the updates before it, × r; the run ends once Σ r reaches the schedule's 40
# steps; a resume is exact.
ada=(--model mlp --train-limit 4096 --steps 40 --micro-batch 32 --accum 8 --optimizer sgd --momentum 0.9 --lr 0.05
  --schedule cosine --warmup 2 --threads 1 --seed 5 --lr-scaling adascale --base-batch 32)
run ada "${ada[@]}"
grep -q "note: --lr-scaling adascale measures the gradient noise scale" "$D/ada.out" || fail "adascale's note: $(cat "$D/ada.out")"
"$PY" - "$D/ada.jsonl" <<'PY' || fail "adascale: the logged rates"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
base, W, T = 0.05, 2, 40
def schedule(s):
    if s < W:
        return base * (s + 1) / W
    p = min(max((s - W) / (T - W), 0.0), 1.0)
    return 0.5 * base * (1 + math.cos(math.pi * p))
position, worst = 0.0, 0.0
for r in rows:
    g = r["lr_scale"]
    assert 1.0 <= g <= 8.0, (r["step"], g)
    want = schedule(position) * g
    worst = max(worst, abs(r["lr"] - want) / want)
    position += g
    assert abs(r["lr_position"] - position) <= 1e-12 * position, (r["step"], r["lr_position"], position)
assert worst <= 1e-12, worst
assert position >= T and position - rows[-1]["lr_scale"] < T and len(rows) < T, (position, len(rows))
gains = [r["lr_scale"] for r in rows]
print(f"adascale: {len(rows)} updates for the schedule's {T} steps (Σ r = {position:.2f}, r from {min(gains):.2f} to "
      f"{max(gains):.2f}); lr = schedule(Σ r before) × r within {worst:.1e} relative")
PY
resume_exact "adascale" "${ada[@]}"

# 5. Bad input: one line, exit 2.
bad() {  # bad expected args...
  local want=$1; shift
  "$G" train --model mlp --train-limit 256 --steps 1 "$@" >"$D/bad.out" 2>&1
  local rc=$?
  [ $rc = 2 ] && [ "$(grep -c . "$D/bad.out")" = 1 ] && grep -q "error: .*$want" "$D/bad.out" \
    || fail "$* (rc $rc): $(cat "$D/bad.out")"
  echo "$*: $(cat "$D/bad.out")"
}
bad "needs --base-batch" --lr-scaling linear
bad "base_batch must be a positive" --lr-scaling sqrt --base-batch 0
bad "base_batch must be a positive" --lr-scaling sqrt --base-batch -32
bad "unknown lr scaling 'cube'" --lr-scaling cube --base-batch 32
bad "adascale is defined for SGD" --micro-batch 32 --accum 2 --lr-scaling adascale --base-batch 32 --optimizer adamw
bad "adascale reads the schedule at fractional positions" --micro-batch 32 --accum 2 --lr-scaling adascale \
  --base-batch 32 --optimizer sgd --schedule ds_warmup
echo "lr scaling: all checks passed"
