#!/usr/bin/env bash
# Data-parallel training with real processes over loopback (c10d TCPStore + Gloo):
#   1. equivalence: world 2 × accumulation 2 × micro 8 ≡ world 1 × accumulation 4 × micro 8 ≡ full
#      batch 32, for the MLP (per-sample) and the gpt on padded text (per-token normalization);
#   2. ZeRO-1 (--zero 1): equal to plain data parallel and to world 1 within 1e-5 with clipping on
#      every step (the global norm), half the optimizer state per rank, bit-exact resume, resharded
#      resume 2 → 1 and 1 → 2 (fp32, bf16 masters), foreign/missing shards refused, fp16 skips alike;
#   3. traffic: collectives per step with and without overlap vs accumulation + 1 (every-micro-batch);
#   4. faults: a killed rank makes its peer exit non-zero within the timeout; the launcher stops the
#      others when one dies; an unreachable store and mismatched configurations are one line.
# ZeRO-2 is tests/zero2.sh's; who hosts the store, tests/rendezvous.sh's. Usage: distributed.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: distributed.sh gradacc python}
PY=${2:?usage: distributed.sh gradacc python}
D=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within, steps_logged

# Weights of two runs agree: max |a − b| relative to how far the weights moved from `init` (the
# criterion of `gradacc verify`: AdamW moves a weight with a near-zero gradient by up to lr on
# rounding noise alone). Measured ≤ 7.4e-4 (2026-11-26, this machine kind); tolerance 5e-3.
compare() {  # compare a.safetensors b.safetensors init.safetensors label tolerance
  "$PY" - "$@" <<'PY' || exit 1
import sys
from safetensors.torch import load_file
a, b, init = (load_file(p) for p in sys.argv[1:4])
label, tol = sys.argv[4], float(sys.argv[5])
diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
moved = max((a[k].double() - init[k].double()).abs().max().item() for k in a)
print(f"{label}: max |Δw| = {diff:.2e}, weights moved up to {moved:.2e}, ratio {diff / moved:.2e} (tolerance {tol:g})")
if not diff / moved < tol:
    sys.exit(f"FAIL: {label} differs beyond tolerance")
PY
}

equivalence() {  # equivalence label args...
  local label=$1; shift
  "$G" train "$@" --steps 1 --lr 1e-30 --save "$D/init.safetensors" >/dev/null 2>&1 || fail "$label: init"
  run_world 2 "$D/w2.safetensors" "$D/w2.jsonl" "$@" --steps 10 --micro-batch 8 --accum 2
  run_world 1 "$D/w1.safetensors" "$D/w1.jsonl" "$@" --steps 10 --micro-batch 8 --accum 4
  run_world 1 "$D/full.safetensors" "$D/full.jsonl" "$@" --steps 10 --micro-batch 32 --accum 1
  compare "$D/w2.safetensors" "$D/w1.safetensors" "$D/init.safetensors" "$label world 2×2×8 vs world 1×4×8" 5e-3
  compare "$D/w2.safetensors" "$D/full.safetensors" "$D/init.safetensors" "$label world 2×2×8 vs full batch 32" 5e-3
  "$PY" - "$D/w2.jsonl" "$D/w1.jsonl" <<'PY' || fail "$label: logged losses differ"
import json, sys
a, b = ([json.loads(l) for l in open(p) if '"step"' in l] for p in sys.argv[1:3])
worst = max(abs(x["loss"] - y["loss"]) / y["loss"] for x, y in zip(a, b))
assert len(a) == len(b) == 10, (len(a), len(b))
assert all(x["items"] == y["items"] for x, y in zip(a, b)), "global item counts differ"
print(f"  logged window losses: max relative difference {worst:.1e}; global item counts identical")
sys.exit(0 if worst < 1e-4 else 1)
PY
}

common=(--schedule cosine --clip 1 --threads 1 --seed 3)
equivalence "mlp" --model mlp --train-limit 4096 "${common[@]}"
equivalence "gpt (per-token)" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 --dim 32 \
  --context 48 "${common[@]}"

# ZeRO-1: the optimizer state sharded over the ranks (reduce-scatter, each rank steps its shard,
# all-gather). Clipping at 0.1 acts on every step, so a clip norm taken over one shard instead of
# the whole gradient would change the weights. Within 1e-5 (absolute) of plain data parallel and of
# world 1 with twice the accumulation; the logged norms and clip factors agree with plain data
# parallel's to 1e-9 (relative), the losses to fp32 rounding.
zero_equivalence() {  # zero_equivalence label args...
  local label=$1; shift
  run_world 2 "$D/z2.safetensors" "$D/z2.jsonl" "$@" --steps 10 --micro-batch 8 --accum 2 --clip 0.1 --zero 1
  run_world 2 "$D/p2.safetensors" "$D/p2.jsonl" "$@" --steps 10 --micro-batch 8 --accum 2 --clip 0.1
  run_world 1 "$D/p1.safetensors" "$D/p1.jsonl" "$@" --steps 10 --micro-batch 8 --accum 4 --clip 0.1
  within "$D/z2.safetensors" "$D/p2.safetensors" 1e-5 "$label: zero 1 world 2 vs world 2"
  within "$D/z2.safetensors" "$D/p1.safetensors" 1e-5 "$label: zero 1 world 2 vs world 1 × accum 4"
  "$PY" - "$D/z2.jsonl" "$D/p2.jsonl" <<'PY' || fail "$label: zero 1 logs"
import json, sys
z, p = ([json.loads(l) for l in open(f) if '"step"' in l] for f in sys.argv[1:3])
assert len(z) == len(p) == 10
assert all(r["clip_coef"] < 1 for r in z), "clipping must act on every step for this test to see the norm"
for a, b in zip(z, p):
    for k in ("grad_norm", "clip_coef"):
        assert abs(a[k] - b[k]) <= 1e-9 * abs(b[k]), (k, a[k], b[k])
    # Plain data parallel carries the loss in the fp32 tail of the gradient buffer; ZeRO in float64.
    assert abs(a["loss"] - b["loss"]) <= 1e-6 * abs(b["loss"]), (a["loss"], b["loss"])
assert all(r["allreduce_calls"] == 3 for r in z), [r["allreduce_calls"] for r in z]
print(f"  logged norms, clip factors and losses agree; 3 collectives per step (reduce-scatter, counts, all-gather)")
PY
}
zero_equivalence "mlp" --model mlp --train-limit 4096 --schedule cosine --threads 1 --seed 3
zero_equivalence "gpt (per-token)" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 \
  --dim 32 --context 48 --schedule cosine --threads 1 --seed 3

# ZeRO-1 memory: rank 0 holds half the optimizer state of plain data parallel (AdamW's two moments).
"$G" launch --nproc 2 -- train --model mlp --train-limit 4096 --steps 2 --micro-batch 8 \
  --accum 2 --threads 1 --zero 1 >"$D/zm.out" 2>&1 || fail "zero memory: $(tail -3 "$D/zm.out")"
"$G" launch --nproc 2 -- train --model mlp --train-limit 4096 --steps 2 --micro-batch 8 \
  --accum 2 --threads 1 >"$D/pm.out" 2>&1 || fail "plain memory: $(tail -3 "$D/pm.out")"
"$PY" - "$D/zm.out" "$D/pm.out" <<'PY' || fail "zero 1 optimizer-state bytes"
import re, sys
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
def state(path):
    m = re.search(r"\[rank 0\] .*optimizer state ([0-9.]+) (\w+) on this rank", open(path).read())
    return float(m.group(1)) * unit[m.group(2)]
z, p = state(sys.argv[1]), state(sys.argv[2])
print(f"optimizer state on rank 0: {z / 2**20:.2f} MiB with zero 1, {p / 2**20:.2f} MiB without (ratio {z / p:.3f})")
sys.exit(0 if 0.45 < z / p < 0.55 else 1)
PY

# ZeRO-1 checkpoints: bit-exact resume at world 2; resharded resume at world 1 (2 → 1) and from a
# world-1 checkpoint at world 2 (1 → 2), with bf16 parameters and fp32 master shards too; each
# equal to the uninterrupted run. A missing shard, or one of another run, is refused in one line.
zr=(train --model mlp --train-limit 4096 --steps 12 --global-batch 32 --micro-batch 8 --threads 1 --schedule cosine --clip 1)
for dtype in fp32 bf16; do
  rm -rf "$D/zc" "$D/zc1" "$D/zc0"
  "$G" launch --nproc 2 -- "${zr[@]}" --param-dtype "$dtype" --zero 1 --save "$D/zfull.safetensors" \
    >/dev/null 2>&1 || fail "zero resume: reference"
  "$G" launch --nproc 2 -- "${zr[@]}" --param-dtype "$dtype" --zero 1 --checkpoint-dir "$D/zc" \
    --stop-at 5 >/dev/null 2>&1 || fail "zero resume: first half"
  [ -f "$D/zc/ckpt-step-00000005.shard-0-of-2.safetensors" ] && [ -f "$D/zc/ckpt-step-00000005.shard-1-of-2.safetensors" ] \
    || fail "zero resume: shard files missing: $(ls "$D/zc")"
  mkdir "$D/zc1" && cp "$D/zc"/* "$D/zc1/"
  "$G" launch --nproc 2 -- "${zr[@]}" --param-dtype "$dtype" --zero 1 --resume "$D/zc" \
    --save "$D/zres.safetensors" >"$D/zr.out" 2>&1 || fail "zero resume: $(tail -3 "$D/zr.out")"
  cmp -s "$D/zfull.safetensors" "$D/zres.safetensors" || fail "zero resume ($dtype): not bit-exact"
  "$G" "${zr[@]}" --param-dtype "$dtype" --resume "$D/zc1" --save "$D/z21.safetensors" >"$D/zr.out" 2>&1 \
    || fail "zero resume 2 → 1: $(tail -3 "$D/zr.out")"
  "$G" "${zr[@]}" --param-dtype "$dtype" --save "$D/zw1.safetensors" >/dev/null 2>&1 || fail "world 1 reference"
  within "$D/z21.safetensors" "$D/zw1.safetensors" 1e-5 "$dtype: zero 1 checkpoint of world 2 resumed at world 1 vs world 1"
  "$G" "${zr[@]}" --param-dtype "$dtype" --checkpoint-dir "$D/zc0" --stop-at 5 >/dev/null 2>&1 || fail "world 1 first half"
  "$G" launch --nproc 2 -- "${zr[@]}" --param-dtype "$dtype" --zero 1 --resume "$D/zc0" \
    --save "$D/z12.safetensors" >"$D/zr.out" 2>&1 || fail "zero resume 1 → 2: $(tail -3 "$D/zr.out")"
  within "$D/z12.safetensors" "$D/zfull.safetensors" 1e-5 "$dtype: world-1 checkpoint resumed with zero 1 at world 2 vs zero 1 world 2"
  echo "$dtype: zero 1 resume at world 2 is bit-exact"
done
rm -rf "$D/zbad" "$D/zother"
# (zc1 holds the bf16 run's checkpoint, the last of the loop.)
"$G" launch --nproc 2 -- "${zr[@]}" --param-dtype bf16 --zero 1 --lr 0.01 \
  --checkpoint-dir "$D/zother" --stop-at 5 >/dev/null 2>&1 || fail "zero: other run"
mkdir "$D/zbad" && cp "$D/zc1/ckpt-step-00000005.safetensors" "$D/zc1/ckpt-step-00000005.shard-0-of-2.safetensors" "$D/zbad/"
"$G" launch --nproc 2 -- "${zr[@]}" --param-dtype bf16 --zero 1 --resume "$D/zbad" >"$D/zb.out" 2>&1 \
  && fail "zero: resumed without a shard"
grep -q "its ZeRO shard ckpt-step-00000005.shard-1-of-2.safetensors is missing" "$D/zb.out" || fail "zero: $(cat "$D/zb.out")"
echo "missing shard: $(grep -o 'error: .*' "$D/zb.out" | head -1)"
cp "$D/zother/ckpt-step-00000005.shard-1-of-2.safetensors" "$D/zbad/"
"$G" "${zr[@]}" --param-dtype bf16 --resume "$D/zbad" >"$D/zb.out" 2>&1 && fail "zero: resumed with another run's shard"
grep -q "shard of another checkpoint" "$D/zb.out" || fail "zero: $(cat "$D/zb.out")"
echo "another run's shard: $(grep -o 'error: .*' "$D/zb.out" | head -1)"

# fp16 with dynamic loss scaling under ZeRO-1: an overflowing window is skipped on every rank alike.
fz=(train --model mlp --train-limit 4096 --steps 12 --micro-batch 8 --accum 2 --threads 1 --param-dtype fp16 --loss-scale-init 1e6)
run_world 2 "$D/fz.safetensors" "$D/fz.jsonl" "${fz[@]:1}" --zero 1
run_world 2 "$D/fp.safetensors" "$D/fp.jsonl" "${fz[@]:1}"
within "$D/fz.safetensors" "$D/fp.safetensors" 1e-5 "fp16 with skipped windows: zero 1 vs plain"
[ "$(grep -c '"skipped":true' "$D/fz.jsonl")" = "$(grep -c '"skipped":true' "$D/fp.jsonl")" ] \
  && [ "$(grep -c '"skipped":true' "$D/fz.jsonl")" -gt 0 ] || fail "fp16: skipped windows differ or none"
echo "  $(grep -c '"skipped":true' "$D/fz.jsonl") skipped windows in both"

# Overlap: the window's all-reduce started bucket by bucket during the last backward gives the same
# weights as at the boundary (sums of the same two numbers), in more, smaller collectives.
ov=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 2 --dim 32 --context 48 --steps 6
    --micro-batch 8 --accum 2 --threads 1 --bucket-mb 0.02)
run_world 2 "$D/on.safetensors" "$D/on.jsonl" "${ov[@]}" --overlap on
run_world 2 "$D/off.safetensors" "$D/off.jsonl" "${ov[@]}" --overlap off
within "$D/on.safetensors" "$D/off.safetensors" 0 "overlap on vs off"
"$PY" - "$D/on.jsonl" "$D/off.jsonl" <<'PY' || fail "overlap traffic"
import json, sys
on, off = ([json.loads(l) for l in open(f) if '"step"' in l] for f in sys.argv[1:3])
assert all(r["allreduce_calls"] > 2 for r in on) and all(r["allreduce_calls"] > 2 for r in off), "expected several buckets"
print(f"  collectives per step: {on[0]['allreduce_calls']} with overlap (parameter buckets + counts), {off[0]['allreduce_calls']} without")
PY

# A memory budget and activation checkpointing under data parallel: world 2, planned on each rank
# (micro-batches of 10 and 6 of each rank's 16, blocks recomputed in the backward pass) ≡ the
# world-1 run above without either.
run_world 2 "$D/ck2.safetensors" "$D/ck2.jsonl" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 \
  --heads 2 --dim 32 --context 48 "${common[@]}" --steps 10 --global-batch 32 --memory-budget 2MiB \
  --activation-checkpointing blocks
compare "$D/ck2.safetensors" "$D/w1.safetensors" "$D/init.safetensors" "gpt world 2, budget 2MiB + checkpointing vs world 1×4×8" 5e-3
"$PY" - "$D/ck2.jsonl" <<'PY' || fail "planned data-parallel run"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert len(rows) == 10 and all(r["micro_batch"] == 10 and r["micro_batches"] == 2 and r["peak_bytes"] <= 2 << 20 for r in rows), rows[0]
print(f"  planned: micro-batch {rows[0]['micro_batch']} ({rows[0]['micro_batches']} per rank per step), peak {max(r['peak_bytes'] for r in rows)} bytes of {2 << 20}")
PY

# Token-budget micro-batches under data parallel, the same windows as the world-1 run above: with
# per-window sync each rank runs its own count of micro-batches; with every-micro-batch sync every
# rank runs the busiest rank's count (empty ones on the others).
for run in "window off" "window on" "every-micro-batch off"; do
  read -r sync packing <<<"$run"
  run_world 2 "$D/tok.safetensors" "$D/tok.jsonl" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 \
    --heads 2 --dim 32 --context 48 "${common[@]}" --steps 10 --global-batch 32 --micro-batching tokens:96 --sync "$sync" \
    --packing "$packing"
  compare "$D/tok.safetensors" "$D/w1.safetensors" "$D/init.safetensors" "gpt world 2, tokens:96, sync $sync, packing $packing vs world 1×4×8" 5e-3
done
"$PY" - "$D/tok.jsonl" <<'PY' || fail "token-budget data-parallel run"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert len(rows) == 10 and all(r["samples"] == 32 and r["micro_batch"] * 48 >= 0 for r in rows), rows[0]
assert all(r["allreduce_calls"] == r["micro_batches"] + 1 for r in rows), [(r["allreduce_calls"], r["micro_batches"]) for r in rows]
print(f"  tokens:96 every-micro-batch: micro-batches per rank {[r['micro_batches'] for r in rows]}, padding {max(r['padding_fraction'] for r in rows):.3f} at most")
PY

# The memory budget plans the token budget on each rank: the same N on both (ranks that planned
# another would be refused by the ranks' config check), every-micro-batch sync, every step within
# the budget, the weights of the world-1 run.
run_world 2 "$D/tokm.safetensors" "$D/tokm.jsonl" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 \
  --heads 2 --dim 32 --context 48 "${common[@]}" --steps 10 --global-batch 32 --micro-batching tokens \
  --memory-budget 2MiB --sync every-micro-batch
compare "$D/tokm.safetensors" "$D/w1.safetensors" "$D/init.safetensors" "gpt world 2, tokens planned by a 2 MiB budget vs world 1×4×8" 5e-3
grep -q "memory plan: budget 2 MiB, micro_batching=tokens:" "$D/out.txt" || fail "planned token budget: $(head -3 "$D/out.txt")"
"$PY" - "$D/tokm.jsonl" <<'PY' || fail "token budget planned by a memory budget, world 2"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert len(rows) == 10 and all(r["samples"] == 32 and r["peak_bytes"] <= 2 << 20 for r in rows), rows[0]
print(f"  planned tokens, world 2: peak {max(r['peak_bytes'] for r in rows)} bytes of {2 << 20}, padding (both ranks) {max(r['padding_fraction'] for r in rows):.3f} at most")
PY

# --accum auto under data parallel: the ranks' first micro-batches are summed with the window, so
# every rank reads the same noise scale and takes the same decision (a rank that chose otherwise
# would run another number of examples: the global count shows it).
run_world 2 "$D/auto.safetensors" "$D/auto.jsonl" --model mlp --train-limit 4096 "${common[@]}" --micro-batch 4 \
  --accum auto:1:24 --accum-auto-warmup 4 --accum-auto-every 4 --steps 16
"$PY" - "$D/auto.jsonl" <<'PY' || fail "accum auto, world 2"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
accums = [r["micro_batches"] for r in rows]
assert len(rows) == 16 and accums[0] == 1 and len(set(accums)) > 1, accums
assert all(r["samples"] == 2 * 4 * a for r, a in zip(rows, accums)), [(r["samples"], a) for r, a in zip(rows, accums)]
assert all(r["noise_scale"] > 0 for r in rows[4:]), [r["noise_scale"] for r in rows]
print(f"accum auto, world 2: micro-batches per rank {accums}; noise scale {rows[-1]['noise_scale']:.0f}")
PY

# Traffic per optimizer step: with overlap (the default) one bucket of this small gpt, then the
# counts; without, one pass with the counts in the buffer's tail.
"$PY" - "$D/w2.jsonl" <<'PY' || fail "per-window traffic"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert all(r["allreduce_calls"] == 2 for r in rows), [r["allreduce_calls"] for r in rows]
print(f"per window (gpt, overlap): {rows[0]['allreduce_calls']} all-reduce calls, {rows[0]['allreduce_bytes']} bytes per optimizer step")
PY
run_world 2 "$D/e.safetensors" "$D/e.jsonl" --model mlp --train-limit 4096 "${common[@]}" --steps 10 --micro-batch 8 --accum 2 --overlap off
"$PY" - "$D/e.jsonl" <<'PY' || fail "per-window traffic without overlap"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert all(r["allreduce_calls"] == 1 for r in rows), [r["allreduce_calls"] for r in rows]
print(f"per window (mlp, no overlap): 1 all-reduce call, {rows[0]['allreduce_bytes']} bytes per optimizer step")
PY
run_world 2 "$D/e.safetensors" "$D/e.jsonl" --model mlp --train-limit 4096 "${common[@]}" --steps 10 --micro-batch 8 --accum 2 --sync every-micro-batch
"$PY" - "$D/e.jsonl" <<'PY' || fail "every-micro-batch traffic"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert all(r["allreduce_calls"] == 3 for r in rows), [r["allreduce_calls"] for r in rows]
print(f"every micro-batch: {rows[0]['allreduce_calls']} all-reduce calls (2 micro-batches + counts), {rows[0]['allreduce_bytes']} bytes per optimizer step")
PY

# SIGTERM (a scheduler's preemption) through the launcher: every rank stops after the same window,
# the ranks checkpoint it; resuming gives the uninterrupted world-2 run, byte for byte.
# Under ZeRO-1, so the checkpoint is sharded.
pre=(train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 4 --dim 64 --context 64
     --micro-batch 4 --accum 2 --steps 300 --threads 1 --schedule cosine --zero 1)
"$G" launch --nproc 2 -- "${pre[@]}" --save "$D/p-full.safetensors" >/dev/null 2>&1 || fail "preemption: reference run"
"$G" launch --nproc 2 -- "${pre[@]}" --save "$D/p.safetensors" --log "$D/p.jsonl" \
  --checkpoint-dir "$D/p-ckpt" >"$D/p.out" 2>&1 &
lp=$!; PIDS+=("$lp")
for _ in $(seq 600); do [ "$(steps_logged "$D/p.jsonl")" -ge 30 ] && break; sleep 0.05; done
kill -TERM "$lp"
wait "$lp"; rc=$?
[ "$rc" -eq 143 ] && grep -q "interrupted (SIGTERM) after step" "$D/p.out" || fail "preemption: exit $rc: $(cat "$D/p.out")"
"$G" launch --nproc 2 -- "${pre[@]}" --save "$D/p.safetensors" --log "$D/p.jsonl" \
  --resume "$D/p-ckpt" >"$D/p2.out" 2>&1 || fail "preemption: resume: $(cat "$D/p2.out")"
cmp -s "$D/p-full.safetensors" "$D/p.safetensors" || fail "preemption: resumed weights differ from the uninterrupted run"
echo "SIGTERM to the launcher: $(grep -o 'interrupted.*step [0-9]* of 300' "$D/p.out"); resumed: byte-identical weights"

# SIGTERM to one rank only: the request travels in the all-reduce and both stop after the same window.
p=$(port)
MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$G" "${pre[@]}" --log "$D/q.jsonl" --checkpoint-dir "$D/q-ckpt" >"$D/q0.out" 2>&1 &
q0=$!; PIDS+=("$q0")
MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$G" "${pre[@]}" --checkpoint-dir "$D/q-ckpt" >"$D/q1.out" 2>&1 &
q1=$!; PIDS+=("$q1")
for _ in $(seq 600); do [ "$(steps_logged "$D/q.jsonl")" -ge 30 ] && break; sleep 0.05; done
kill -TERM "$q1"
wait "$q1"; rc1=$?
wait "$q0"; rc0=$?
step=$(grep -o 'after step [0-9]*' "$D/q0.out" | grep -o '[0-9]*')
[ "$rc0" -eq 143 ] && [ "$rc1" -eq 143 ] && grep -q "stopped because another rank was interrupted" "$D/q0.out" \
  && [ -f "$D/q-ckpt/ckpt-step-$(printf %08d "$step").safetensors" ] \
  || fail "one-rank SIGTERM: exits $rc0/$rc1: $(cat "$D/q0.out" "$D/q1.out")"
echo "SIGTERM to rank 1 only: rank 0 $(grep -o 'stopped because.*step [0-9]*' "$D/q0.out"), checkpoint of step $step"

# A rank killed mid-run (under ZeRO-1): its peer stops with an error within the timeout, never hangs.
p=$(port)
long=(train --model mlp --train-limit 4096 --micro-batch 8 --accum 2 --steps 100000 --threads 1 --dist-timeout 15 --zero 1)
MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$G" "${long[@]}" --log "$D/f.jsonl" >"$D/r0.out" 2>"$D/r0.err" &
r0=$!; PIDS+=("$r0")
MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$G" "${long[@]}" >/dev/null 2>&1 &
r1=$!; PIDS+=("$r1")
for _ in $(seq 600); do [ "$(steps_logged "$D/f.jsonl")" -ge 3 ] && break; sleep 0.05; done
kill -9 "$r1"
start=$(date +%s)
wait "$r0"; rc=$?
took=$(( $(date +%s) - start ))
[ "$rc" -ne 0 ] || fail "rank 0 exited 0 after its peer died"
[ "$took" -le 25 ] || fail "rank 0 took $took s to notice (timeout 15 s)"
grep -q "because rank 1 did not answer" "$D/r0.err" || fail "rank 0 did not name the dead rank: $(cat "$D/r0.err")"
[ "$(wc -l <"$D/r0.err")" -eq 1 ] || fail "rank 0 printed $(wc -l <"$D/r0.err") error lines: $(cat "$D/r0.err")"
echo "killed rank 1: rank 0 exited $rc after $took s: $(cat "$D/r0.err")"

# A rank that stalls (SIGSTOP): its peer gives up after --dist-timeout and names it.
p=$(port)
stall=(train --model mlp --train-limit 4096 --micro-batch 8 --accum 2 --steps 100000 --threads 1 --dist-timeout 4)
MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$G" "${stall[@]}" --log "$D/st.jsonl" >/dev/null 2>"$D/st.err" &
s0=$!; PIDS+=("$s0")
MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$G" "${stall[@]}" >/dev/null 2>&1 &
s1=$!; PIDS+=("$s1")
for _ in $(seq 600); do [ "$(steps_logged "$D/st.jsonl")" -ge 3 ] && break; sleep 0.05; done
kill -STOP "$s1"
start=$(date +%s)
wait "$s0"; rc=$?
took=$(( $(date +%s) - start ))
kill -9 "$s1" 2>/dev/null
[ "$rc" -ne 0 ] && [ "$took" -le 15 ] && grep -q "because rank 1 did not answer" "$D/st.err" \
  || fail "stalled peer: exit $rc after $took s: $(cat "$D/st.err")"
echo "stalled rank 1: rank 0 exited $rc after $took s (timeout 4 s + 5 s roll call): $(cut -c1-120 "$D/st.err")"

# Rank 0 stalls (SIGSTOP): it hosts the rendezvous store, so rank 1's roll call cannot reach the
# store either; rank 1 still gives up within the timeout and the roll call's own deadline, naming
# rank 0, and the launcher returns.
p=$(port)
MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$G" "${stall[@]}" --log "$D/s0.jsonl" >/dev/null 2>&1 &
t0=$!; PIDS+=("$t0")
MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$G" "${stall[@]}" >/dev/null 2>"$D/s1.err" &
t1=$!; PIDS+=("$t1")
for _ in $(seq 600); do [ "$(steps_logged "$D/s0.jsonl")" -ge 3 ] && break; sleep 0.05; done
kill -STOP "$t0"
start=$(date +%s)
wait "$t1"; rc=$?
took=$(( $(date +%s) - start ))
kill -9 "$t0" 2>/dev/null
[ "$rc" -ne 0 ] && [ "$took" -le 20 ] && grep -q "rank 0" "$D/s1.err" && [ "$(wc -l <"$D/s1.err")" -eq 1 ] \
  || fail "stalled rank 0: rank 1 exit $rc after $took s: $(cat "$D/s1.err")"
echo "stalled rank 0 (the store host): rank 1 exited $rc after $took s: $(cut -c1-120 "$D/s1.err")"

# The launcher stops the other ranks when one dies.
"$G" launch --nproc 2 --grace 5 -- "${long[@]}" --log "$D/l.jsonl" >"$D/l.out" 2>"$D/l.err" &
lp=$!; PIDS+=("$lp")
for _ in $(seq 600); do [ "$(steps_logged "$D/l.jsonl")" -ge 3 ] && break; sleep 0.05; done
child=$(pgrep -P "$lp" | tail -1)
[ -n "$child" ] || fail "no rank processes under the launcher"
kill -9 "$child"
start=$(date +%s)
wait "$lp"; rc=$?
took=$(( $(date +%s) - start ))
[ "$rc" -ne 0 ] || fail "launch exited 0 after a rank died"
grep -q "was killed by signal 9" "$D/l.err" || fail "launch did not report the dead rank: $(cat "$D/l.err")"
pgrep -P "$lp" >/dev/null 2>&1 && fail "ranks left running"
echo "launch: $(grep -o 'rank . was killed.*' "$D/l.err" | head -1); exit $rc after $took s"

# A rank that cannot reach the store: one line, non-zero, within the timeout.
start=$(date +%s)
MASTER_PORT=$(port) WORLD_SIZE=2 RANK=1 "$G" train --model mlp --steps 1 --train-limit 256 --dist-timeout 3 >/dev/null 2>"$D/s.err"
rc=$?
[ "$rc" -eq 2 ] && grep -q "cannot reach the rendezvous store" "$D/s.err" && [ "$(wc -l <"$D/s.err")" -eq 1 ] \
  || fail "unreachable store: exit $rc, $(cat "$D/s.err")"
echo "unreachable store after $(( $(date +%s) - start )) s: $(cat "$D/s.err")"

# Ranks with different configurations refuse to train.
p=$(port)
MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$G" train --model mlp --steps 2 --train-limit 256 --lr 0.001 --dist-timeout 20 >/dev/null 2>"$D/m0.err" &
m0=$!; PIDS+=("$m0")
MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$G" train --model mlp --steps 2 --train-limit 256 --lr 0.002 --dist-timeout 20 >/dev/null 2>"$D/m1.err"
rc1=$?
wait "$m0"; rc0=$?
[ "$rc0" -eq 2 ] && [ "$rc1" -eq 2 ] && grep -q "lr=0.001" "$D/m0.err" && grep -q "lr=0.002" "$D/m1.err" \
  || fail "config mismatch: exits $rc0/$rc1: $(cat "$D/m0.err" "$D/m1.err")"
echo "mismatch: $(cat "$D/m0.err")"
echo "distributed: all checks passed"
