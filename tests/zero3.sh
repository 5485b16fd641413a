#!/usr/bin/env bash
# ZeRO-3 (--zero 3) with real processes over loopback (c10d TCPStore + Gloo):
#   1. equivalence with clipping on every step, mlp, cnn and gpt (per-token): world 2 × accumulation 4
#      vs world 1 × accumulation 8 within 1e-5; vs ZeRO-2 at world 2 within 1e-6; resharding after
#      the forward on vs off within 1e-6; accumulation 4 vs 1 at world 2 within 1e-5 (the cnn, whose
#      convolutions round by batch size, 2e-4; its accumulation 1 equals plain data parallel's within
#      1e-6); activation checkpointing on (the gpt) within 1e-6 of off;
#      --accumulate-unsharded on (FSDP's no_sync: units kept and the gradient summed whole for the
#      window, reduced once) within 1e-5 of world 1 and 1e-6 of ZeRO-1 (which sums in the same order);
#   2. all-gathers per window (the log's parameter_gathers): micro-batches × (1 + 2·units) with
#      resharding after the forward, × (1 + units) without (the root unit once per micro-batch),
#      1 + units when accumulating unsharded, with that mode's collectives per window fewer;
#   3. a short last window that leaves a rank without examples for a micro-batch (its stand-in
#      gathers with the others and adds nothing): within 1e-6 of ZeRO-2 (which reduces zeros);
#   4. checkpoints, the parameters in each rank's shard file (none in the main file): world 2 at
#      stage 3 → world 1 without ZeRO, → world 2 at stage 3, and back, against the uninterrupted
#      run within 1e-6; bf16 masters from stage 3 into ZeRO-1 bit for bit;
#   5. memory at R = 1, 2, 4 on a gpt of 6 × 256: rank 0's static bytes (parameters, gradient
#      buffers, optimizer state) at R = 2 ≤ 0.55 × world 1's plus one block's parameters;
#   6. a gpt whose fp32 parameters, gradients and Adam state exceed one rank's budget: refused at
#      world 1 naming the ranks it would need, trained at world 4 under --zero 3 within the budget;
#   7. bad input: every-micro-batch sync refused in one line; world 1 is a note.
# The saved --save file is the consolidated model, read back with Python's safetensors throughout.
# Usage: zero3.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: zero3.sh gradacc python}
PY=${2:?usage: zero3.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within

gathers() {  # gathers log.jsonl expected label: every step's parameter_gathers equals `expected`
  "$PY" - "$1" "$2" "$3" <<'PY' || fail "$3: all-gathers per window"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
got = sorted({r.get("parameter_gathers", 0) for r in steps})
assert got == [int(sys.argv[2])], (got, sys.argv[2])
print(f"  {sys.argv[3]}: {sys.argv[2]} all-gathers per window")
PY
}

# 1–2.
equivalence() {  # equivalence label units accum-tolerance args...
  local label=$1 units=$2 accum_tol=$3; shift 3
  local a=("$@" --steps 6 --micro-batch 8 --clip 0.1)
  run_world 2 "$D/z3.safetensors" "$D/z3.jsonl" "${a[@]}" --accum 4 --zero 3 --bucket-mb 0.015625
  run_world 2 "$D/off.safetensors" "$D/off.jsonl" "${a[@]}" --accum 4 --zero 3 --reshard-after-forward off
  run_world 2 "$D/ns.safetensors" "$D/ns.jsonl" "${a[@]}" --accum 4 --zero 3 --accumulate-unsharded on
  run_world 2 "$D/z2.safetensors" "$D/z2.jsonl" "${a[@]}" --accum 4 --zero 2
  run_world 1 "$D/w1.safetensors" "$D/w1.jsonl" "${a[@]}" --accum 8
  run_world 2 "$D/a1.safetensors" "$D/a1.jsonl" "$@" --steps 6 --clip 0.1 --micro-batch 32 --accum 1 --zero 3
  run_world 2 "$D/p1.safetensors" "$D/p1.jsonl" "$@" --steps 6 --clip 0.1 --micro-batch 32 --accum 1
  within "$D/z3.safetensors" "$D/w1.safetensors" 1e-5 "$label: zero 3 world 2 × accum 4 vs world 1 × accum 8"
  within "$D/z3.safetensors" "$D/z2.safetensors" 1e-6 "$label: zero 3 vs zero 2"
  within "$D/z3.safetensors" "$D/off.safetensors" 1e-6 "$label: reshard after forward on vs off"
  run_world 2 "$D/z1.safetensors" "$D/z1.jsonl" "${a[@]}" --accum 4 --zero 1
  within "$D/ns.safetensors" "$D/w1.safetensors" 1e-5 "$label: accumulate unsharded (no_sync) vs world 1 × accum 8"
  within "$D/ns.safetensors" "$D/z1.safetensors" 1e-6 "$label: accumulate unsharded vs zero 1 (the same sums)"
  within "$D/a1.safetensors" "$D/p1.safetensors" 1e-6 "$label: accum 1 × micro 32, zero 3 vs plain data parallel"
  within "$D/z3.safetensors" "$D/a1.safetensors" "$accum_tol" "$label: zero 3 accum 4 × micro 8 vs accum 1 × micro 32"
  gathers "$D/z3.jsonl" $((4 * (1 + 2 * units))) "$label, resharding after the forward ($units units and the root)"
  gathers "$D/off.jsonl" $((4 * (1 + units))) "$label, keeping them to the backward"
  gathers "$D/ns.jsonl" $((1 + units)) "$label, keeping them for the window (accumulate unsharded)"
  "$PY" - "$D/ns.jsonl" "$D/off.jsonl" "$label" <<'PY' || fail "$label: no_sync's traffic"
import json, sys
def per_window(path):
    s = [json.loads(l) for l in open(path) if '"step"' in l]
    return s[0]["allreduce_calls"], s[0]["allreduce_bytes"]
(nc, nb), (oc, ob) = per_window(sys.argv[1]), per_window(sys.argv[2])
assert nb < ob and nc < oc, (nc, nb, oc, ob)
print(f"  {sys.argv[3]}: collectives per window {nc} ({nb} bytes) accumulating unsharded, {oc} ({ob} bytes) reducing"
      " every micro-batch")
PY
}
common=(--schedule cosine --threads 1 --seed 3)
equivalence "mlp" 0 1e-5 --model mlp --train-limit 2048 "${common[@]}"
# The cnn's convolutions round differently at another micro-batch size (world 1 alone: 1.3e-3 after 6
# Adam steps between micro-batches of 64 and 8 × 8), so its accumulation check is ZeRO-2's bound.
equivalence "cnn" 2 2e-4 --model cnn --train-limit 2048 "${common[@]}"
gpt=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 2 --heads 2 --dim 32 --context 48 "${common[@]}")
equivalence "gpt (per-token)" 2 1e-5 "${gpt[@]}"
run_world 2 "$D/ck.safetensors" "$D/ck.jsonl" "${gpt[@]}" --steps 6 --micro-batch 8 --clip 0.1 --accum 4 --zero 3 \
  --activation-checkpointing blocks
within "$D/ck.safetensors" "$D/z3.safetensors" 1e-6 "gpt: activation checkpointing on vs off under zero 3"
# Held-out evaluation during training gathers on every rank (a collective) and leaves the weights
# and the windows' gather counts alone.
run_world 2 "$D/ev.safetensors" "$D/ev.jsonl" "${gpt[@]}" --steps 6 --micro-batch 8 --clip 0.1 --accum 4 --zero 3 \
  --eval-every 2 --bucket-mb 0.015625
within "$D/ev.safetensors" "$D/z3.safetensors" 0 "gpt: --eval-every 2 under zero 3"
[ "$(grep -c '"event":"eval"' "$D/ev.jsonl")" -ge 3 ] || fail "evaluations under zero 3: $(grep -c eval "$D/ev.jsonl")"
gathers "$D/ev.jsonl" 20 "gpt with evaluations every 2 steps"

# 3. 201 examples in windows of 64: the last holds 9, shares of 5 and 4 in micro-batches of 4, so
# rank 1's second micro-batch is empty.
short=(--model cnn --train-limit 201 --global-batch 64 --micro-batch 4 --steps 8 --clip 0.1 --threads 1 --seed 3)
run_world 2 "$D/s3.safetensors" "$D/s3.jsonl" "${short[@]}" --zero 3
run_world 2 "$D/s2.safetensors" "$D/s2.jsonl" "${short[@]}" --zero 2
within "$D/s3.safetensors" "$D/s2.safetensors" 1e-6 "short windows: zero 3 (a stand-in) vs zero 2 (empty micro-batch)"
"$PY" - "$D/s3.jsonl" <<'PY' || fail "short windows: the logged counts"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
short = [r for r in steps if r["samples"] == 9]
assert len(short) == 2 and all(r["parameter_gathers"] == 2 * 5 for r in short), short
print("  the short windows (9 examples) counted 9 samples; each rank gathered 2 × 5 times")
PY

# 4. Resume across world sizes and stages.
ck=("${gpt[@]}" --steps 6 --micro-batch 8 --global-batch 64 --clip 0.1)
run_world 1 "$D/u.safetensors" "$D/u.jsonl" "${ck[@]}"
"$G" launch --nproc 2 -- train "${ck[@]}" --zero 3 --checkpoint-dir "$D/c3" --stop-at 3 \
  >"$D/out.txt" 2>&1 || fail "stage 3, first half: $(tail -3 "$D/out.txt")"
[ -f "$D/c3/ckpt-step-00000003.shard-1-of-2.safetensors" ] || fail "stage 3 wrote no shard files"
# The parameters are in the shards, each rank's own; the main file holds no trainable parameter.
"$PY" - "$D/c3" <<'PY' || fail "stage 3 checkpoint layout"
import json, struct, sys
def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
main = header(f"{sys.argv[1]}/ckpt-step-00000003.safetensors")
model = [k for k in main if k.startswith("model.")]
assert main["__metadata__"]["zero.params"] == "sharded" and not model, model
shards = [header(f"{sys.argv[1]}/ckpt-step-00000003.shard-{r}-of-2.safetensors") for r in range(2)]
lengths = [s["state.params"]["shape"][0] for s in shards]
total = int(shards[0]["__metadata__"]["zero.total"])
assert all(s["__metadata__"]["zero.weights"] == main["__metadata__"]["zero.weights"] for s in shards)
assert total <= sum(lengths) < total + 1000, (lengths, total)  # each unit padded to 2 × L_u
print(f"  stage 3 checkpoint: main file without parameters; shards hold {lengths} of {total} parameter elements")
PY
run_world 2 "$D/r3.safetensors" "$D/r3.jsonl" "${ck[@]}" --zero 3 --resume "$D/c3"
within "$D/r3.safetensors" "$D/u.safetensors" 1e-6 "resume: world 2 zero 3 → world 2 zero 3 vs uninterrupted"
run_world 1 "$D/r1.safetensors" "$D/r1.jsonl" "${ck[@]}" --resume "$D/c3"
within "$D/r1.safetensors" "$D/u.safetensors" 1e-6 "resume: world 2 zero 3 → world 1 vs uninterrupted"
"$G" train "${ck[@]}" --checkpoint-dir "$D/c1" --stop-at 3 >"$D/out.txt" 2>&1 || fail "world 1, first half"
run_world 2 "$D/r2.safetensors" "$D/r2.jsonl" "${ck[@]}" --zero 3 --resume "$D/c1"
within "$D/r2.safetensors" "$D/u.safetensors" 1e-6 "resume: world 1 → world 2 zero 3 vs uninterrupted"
run_world 2 "$D/b1.safetensors" "$D/b1.jsonl" "${ck[@]}" --zero 1 --param-dtype bf16
"$G" launch --nproc 2 -- train "${ck[@]}" --zero 3 --param-dtype bf16 --checkpoint-dir "$D/cb" \
  --stop-at 3 >"$D/out.txt" 2>&1 || fail "bf16 stage 3, first half: $(tail -3 "$D/out.txt")"
run_world 2 "$D/rb.safetensors" "$D/rb.jsonl" "${ck[@]}" --zero 1 --param-dtype bf16 --resume "$D/cb"
within "$D/rb.safetensors" "$D/b1.safetensors" 0 "resume: bf16 masters, zero 3 → zero 1 vs uninterrupted zero 1"

# 5. Memory: the gpt at 6 × 256 (4.8 M parameters), micro-batches of 2 × 32 tokens.
mem=(train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 6 --dim 256 --heads 4 --context 32
  --micro-batch 2 --accum 2 --steps 2 --threads 1 --seed 1)
"$G" "${mem[@]}" >"$D/m1.out" 2>&1 || fail "memory R=1: $(tail -3 "$D/m1.out")"
for r in 2 4; do
  "$G" launch --nproc "$r" -- "${mem[@]}" --zero 3 >"$D/m$r.out" 2>&1 \
    || fail "memory R=$r: $(tail -3 "$D/m$r.out")"
done
"$PY" - "$D" <<'PY' || fail "zero 3 memory"
import re, sys
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
def read(r):
    text = open(f"{sys.argv[1]}/m{r}.out").read()
    m = re.search(r"peak tensor memory ([0-9.]+) (\w+); optimizer state ([0-9.]+) (\w+) on this rank; "
                  r"gradient buffers ([0-9.]+) (\w+); parameters ([0-9.]+) (\w+)", text)
    v = [float(m.group(i)) * unit[m.group(i + 1)] for i in (1, 3, 5, 7)]
    return {"peak": v[0], "optimizer": v[1], "gradients": v[2], "parameters": v[3], "static": sum(v[1:])}
rows = {r: read(r) for r in (1, 2, 4)}
D, block = 256, 12 * 256 * 256 + 13 * 256  # one block's parameters (LayerNorms, attention, MLP)
mib = 1 << 20
print("| R | parameters | gradient buffers | optimizer state | static total | ratio to R = 1 | step peak |")
print("|---|---|---|---|---|---|---|")
for r, x in rows.items():
    print(f"| {r} | {x['parameters'] / mib:.1f} MiB | {x['gradients'] / mib:.1f} MiB | {x['optimizer'] / mib:.1f} MiB "
          f"| {x['static'] / mib:.1f} MiB | {x['static'] / rows[1]['static']:.3f} | {x['peak'] / mib:.1f} MiB |")
limit = 0.55 * rows[1]["static"] + 4 * block
assert rows[2]["static"] <= limit, (rows[2]["static"], limit)
assert rows[4]["static"] < rows[2]["static"], "R = 4 keeps less than R = 2"
print(f"  R = 2 keeps {rows[2]['static'] / mib:.1f} MiB ≤ 0.55 × {rows[1]['static'] / mib:.1f} MiB + one block "
      f"({4 * block / mib:.1f} MiB)")
PY

# 6. A model larger than one rank's budget: the gpt's 73 MiB of fp32 parameters, gradients and Adam
# state under a budget of 64 MiB is refused at world 1 naming the ranks ZeRO-3 needs, and trains at
# world 4 under --zero 3 within the budget (the planner's prediction is the measured peak).
big=(train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 6 --dim 256 --heads 4 --context 32
  --global-batch 32 --steps 2 --threads 1 --seed 1 --memory-budget 64MiB)
"$G" "${big[@]}" >"$D/big1.out" 2>&1 && fail "world 1 trained a model over its budget"
grep -q "error: memory budget 64 MiB is below the static need of .* or about [0-9]* ranks under --zero 3" "$D/big1.out" \
  || fail "world 1 refusal: $(cat "$D/big1.out")"
echo "world 1: $(grep -o 'or about [0-9]* ranks under --zero 3' "$D/big1.out")"
"$G" launch --nproc 4 -- "${big[@]}" --zero 3 >"$D/big4.out" 2>&1 \
  || fail "world 4 under zero 3: $(tail -3 "$D/big4.out")"
"$PY" - "$D/big4.out" <<'PY' || fail "world 4 under the budget"
import re, sys
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
text = open(sys.argv[1]).read()
m = re.search(r"\[rank 0\] peak tensor memory ([0-9.]+) (\w+) of the 64 MiB budget", text)
peak = float(m.group(1)) * unit[m.group(2)]
assert peak <= 64 * unit["MiB"], peak
print(f"  world 4 under zero 3: peak {peak / unit['MiB']:.1f} MiB of the 64 MiB budget")
PY

# The planner costs the three modes and keeps the one that communicates least among those that fit.
fit_chooses() {  # fit_chooses budget mode extra-args...: plan --fit costs all three modes and picks `mode`
  local budget=$1 want=$2; shift 2
  "$G" launch --nproc 2 -- plan --fit "${big[@]:1:${#big[@]}-3}" --zero 3 --memory-budget "$budget" \
    "$@" >"$D/fit.out" 2>&1 || fail "plan --fit under $budget: $(tail -3 "$D/fit.out")"
  grep -q "\[rank 0\] ZeRO-3, resharding .*peak .* of parameters gathered" "$D/fit.out" \
    && grep -q "\[rank 0\] ZeRO-3, kept to backward peak" "$D/fit.out" \
    && grep -q "\[rank 0\] ZeRO-3, kept for window  peak" "$D/fit.out" || fail "plan --fit under $budget: $(cat "$D/fit.out")"
  grep -q "\[rank 0\] ZeRO stage *3: $want" "$D/fit.out" || fail "plan --fit under $budget chose otherwise: $(grep 'ZeRO' "$D/fit.out")"
  echo "  plan --fit under $budget $*: $(grep -o '\[rank 0\] ZeRO stage.*' "$D/fit.out" | cut -c1-110)"
}
fit_chooses 64MiB "resharding"
# One micro-batch per window: keeping for the window saves nothing, so the smaller of the two.
fit_chooses 200MiB "kept to backward"
# Four micro-batches of 4: resharding 62, kept to backward 71, kept for window 87 MiB.
fit_chooses 90MiB "kept for window" --micro-batch 4
"$G" launch --nproc 2 -- "${big[@]:0:${#big[@]}-1}" 90MiB --micro-batch 4 --zero 3 \
  --log "$D/nsb.jsonl" >"$D/nsb.out" 2>&1 || fail "zero 3 kept for window under 90 MiB: $(tail -3 "$D/nsb.out")"
gathers "$D/nsb.jsonl" 7 "gpt 6 × 256 under 90 MiB, the planner's no_sync (6 units and the root once per window)"
"$PY" - "$D/nsb.out" <<'PY' || fail "no_sync under the budget"
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"\[rank 0\] peak tensor memory ([0-9.]+) MiB of the 90 MiB budget", text)
assert m and float(m.group(1)) <= 90, text[-600:]
print(f"  its peak: {m.group(1)} MiB of the 90 MiB budget")
PY

# 7. Bad input: one line and exit 2; world 1 is a note.
refuses_per_micro_batch_sync 3
bad_line() {  # bad_line expected-text args...: one error line, exit 2
  local want=$1; shift
  "$G" launch --nproc 2 -- train --model mlp --train-limit 256 --steps 1 "$@" >"$D/bad.out" 2>&1
  [ $? -ne 0 ] && grep -q "error: $want" "$D/bad.out" || fail "$*: $(cat "$D/bad.out")"
  echo "$*: $(grep -o 'error: .*' "$D/bad.out" | head -1)"
}
bad_line "accumulate_unsharded is ZeRO-3's" --zero 2 --accumulate-unsharded on
bad_line "accumulate_unsharded keeps every unit gathered" --zero 3 --accumulate-unsharded on --reshard-after-forward on
echo "zero 3: all checks passed"
