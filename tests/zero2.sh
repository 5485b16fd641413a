#!/usr/bin/env bash
# ZeRO-2 (--zero 2) with real processes over loopback (c10d TCPStore + Gloo):
#   1. equivalence with clipping on every step: world 2 × accumulation 4 vs world 1 × accumulation 8
#      within 1e-5 (ZeRO-1 within 1e-6), mlp and gpt (per-token); logged norms equal ZeRO-1's;
#   2. accumulation 4 vs accumulation 1 over the same windows at world 2: within 1e-5 (a shard reset
#      every micro-batch keeps only the last micro-batch and fails this by far);
#   3. collectives per window: micro-batches × buckets reduces + one small all-reduce + one all-gather;
#   4. memory at R = 1, 2, 4 (a gpt whose memory is mostly parameters): gradient buffers within
#      4P/R plus two buckets, and the step peak at R = 2 lower than ZeRO-1's by ≥ 0.4 × 4P;
#   5. checkpoints: 2 → 2 byte-identical, 2 → 1 and 1 → 2, and ZeRO-1 ↔ ZeRO-2, in fp32 and with bf16
#      masters, against uninterrupted runs; fp16 skips the same windows as plain data parallel;
#   6. bad input: every-micro-batch sync refused in one line; world 1 is a note;
#   and --zero auto: ZeRO-1 under a loose budget, ZeRO-2 under one only it fits, both stages reported.
# Usage: zero2.sh path/to/gradacc path/to/venv/python
set -u
G=${1:?usage: zero2.sh gradacc python}
PY=${2:?usage: zero2.sh gradacc python}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
. "$(dirname "$0")/ranks_lib.sh"  # fail, port, run_world, max_diff, within

# 1–3. Buckets of 16 KiB (at most 1/8 of a shard anyway) make several per shard.
equivalence() {  # equivalence label args...
  local label=$1; shift
  local a=("$@" --steps 10 --micro-batch 8 --clip 0.1)
  run_world 2 "$D/z2.safetensors" "$D/z2.jsonl" "${a[@]}" --accum 4 --zero 2 --bucket-mb 0.015625
  run_world 2 "$D/z1.safetensors" "$D/z1.jsonl" "${a[@]}" --accum 4 --zero 1
  run_world 1 "$D/w1.safetensors" "$D/w1.jsonl" "${a[@]}" --accum 8
  "$G" launch --nproc 2 -- train "$@" --steps 10 --clip 0.1 --micro-batch 32 --accum 1 \
    --zero 2 --bucket-mb 0.015625 --save "$D/a1.safetensors" --log "$D/a1.jsonl" >"$D/out.txt" 2>&1 \
    || fail "$label: accumulation 1: $(tail -3 "$D/out.txt")"
  within "$D/z2.safetensors" "$D/w1.safetensors" 1e-5 "$label: zero 2 world 2 × accum 4 vs world 1 × accum 8"
  within "$D/z1.safetensors" "$D/w1.safetensors" 1e-6 "$label: zero 1 world 2 × accum 4 vs world 1 × accum 8"
  within "$D/z2.safetensors" "$D/a1.safetensors" 1e-5 "$label: zero 2 accum 4 × micro 8 vs accum 1 × micro 32"
  "$PY" - "$D/z2.jsonl" "$D/z1.jsonl" "$D/a1.jsonl" <<'PY' || fail "$label: zero 2 logs"
import json, sys
z, o, a = ([json.loads(l) for l in open(f) if '"step"' in l] for f in sys.argv[1:4])
assert len(z) == len(o) == len(a) == 10
assert all(r["clip_coef"] < 1 for r in z), "clipping must act on every step for this test to see the norm"
for x, y in zip(z, o):
    for k in ("grad_norm", "clip_coef", "loss"):
        assert abs(x[k] - y[k]) <= 1e-6 * abs(y[k]), (k, x[k], y[k])
buckets = a[0]["allreduce_calls"] - 2  # accumulation 1: one reduce per bucket, the counts, the all-gather
assert buckets > 2, buckets
assert all(r["allreduce_calls"] == 4 * buckets + 2 for r in z), [r["allreduce_calls"] for r in z]
print(f"  norms, clip factors and losses equal zero 1's (1e-6); {buckets} buckets: "
      f"{4 * buckets + 2} collectives per window of 4 micro-batches (4 × {buckets} reduces, counts, all-gather)")
PY
}
common=(--schedule cosine --threads 1 --seed 3)
equivalence "mlp" --model mlp --train-limit 4096 "${common[@]}"
equivalence "gpt (per-token)" --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 \
  --dim 32 --context 48 "${common[@]}"

# 4. Memory: a gpt of 3.2 M parameters (4P = 12.3 MiB) and micro-batches of 2 × 32 tokens.
mem=(train --model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 4 --dim 256 --heads 4 --context 32
  --micro-batch 2 --accum 2 --steps 2 --threads 1 --seed 1)
for r in 1 2 4; do
  for z in 1 2; do
    if [ "$r" = 1 ]; then
      "$G" "${mem[@]}" --zero "$z" >"$D/m$r$z.out" 2>&1 || fail "memory R=$r: $(tail -3 "$D/m$r$z.out")"
    else
      "$G" launch --nproc "$r" -- "${mem[@]}" --zero "$z" >"$D/m$r$z.out" 2>&1 \
        || fail "memory R=$r zero $z: $(tail -3 "$D/m$r$z.out")"
    fi
  done
done
"$PY" - "$D" <<'PY' || fail "zero 2 memory"
import re, sys
unit = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
def read(r, z):
    text = open(f"{sys.argv[1]}/m{r}{z}.out").read()
    m = re.search(r"peak tensor memory ([0-9.]+) (\w+); .*gradient buffers ([0-9.]+) (\w+)", text)
    return float(m.group(1)) * unit[m.group(2)], float(m.group(3)) * unit[m.group(4)]
four_p = read(1, 1)[1]  # world 1: the one accumulation buffer, 4P bytes (and a few statistics)
mib = 1 << 20
print("| R | ZeRO-1 peak | ZeRO-2 peak | ZeRO-1 gradient buffers | ZeRO-2 gradient buffers | 4P/R + two buckets |")
print("|---|---|---|---|---|---|")
ok = True
for r in (1, 2, 4):
    (p1, g1), (p2, g2) = read(r, 1), read(r, 2)
    shard = four_p / r
    # Two buckets of at most 1/8 of the shard; 1% for the three significant digits the log prints.
    bound = (shard + 2 * shard / 8) * 1.01
    print(f"| {r} | {p1 / mib:.1f} MiB | {p2 / mib:.1f} MiB | {g1 / mib:.2f} MiB | {g2 / mib:.2f} MiB | {bound / mib:.2f} MiB |")
    if r > 1 and g2 > bound:
        ok = False
        print(f"R={r}: ZeRO-2 keeps {g2} gradient bytes, more than {bound}")
(p1, _), (p2, _) = read(2, 1), read(2, 2)
print(f"R = 2: ZeRO-2's peak is {(p1 - p2) / mib:.1f} MiB below ZeRO-1's = {(p1 - p2) / four_p:.2f} × 4P (needs ≥ 0.4)")
sys.exit(0 if ok and p1 - p2 >= 0.4 * four_p else 1)
PY

# 4b. --zero auto under a memory budget: ZeRO-1 when it fits (the cheaper in communication), else
#     ZeRO-2; the plan reports both stages, and the run stays within the budget.
au=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 4 --dim 256 --heads 4 --context 32
  --global-batch 16 --threads 1 --seed 1 --zero auto)
"$G" launch --nproc 2 -- train "${au[@]}" --steps 2 --memory-budget 200MiB >"$D/a1.out" 2>&1 \
  || fail "zero auto, 200 MiB: $(tail -3 "$D/a1.out")"
grep -q "\[rank 0\] zero auto chose ZeRO-1: it fits" "$D/a1.out" || fail "zero auto, 200 MiB: $(cat "$D/a1.out")"
"$G" launch --nproc 2 -- train "${au[@]}" --steps 2 --memory-budget 56MiB >"$D/a2.out" 2>&1 \
  || fail "zero auto, 56 MiB: $(tail -3 "$D/a2.out")"
grep -q "\[rank 0\] zero auto chose ZeRO-2, .*with ZeRO-1, memory budget 56 MiB cannot hold one micro-batch" "$D/a2.out" \
  || fail "zero auto, 56 MiB: $(cat "$D/a2.out")"
grep -q "\[rank 0\] peak tensor memory .* of the 56 MiB budget; .*(ZeRO-2: shard 0 of 2)" "$D/a2.out" \
  || fail "zero auto, 56 MiB: $(cat "$D/a2.out")"
echo "zero auto: $(grep -o '\[rank 0\] zero auto chose ZeRO-2[^:]*' "$D/a2.out")"
"$G" launch --nproc 2 -- plan --fit --json "${au[@]}" --memory-budget 56MiB >"$D/p.out" 2>&1 \
  || fail "plan --fit: $(tail -3 "$D/p.out")"
"$PY" - "$D/p.out" <<'PY' || fail "plan --fit --json: the stages"
import json, sys
line = next(l for l in open(sys.argv[1]) if l.startswith("[rank 0] {"))
z = json.loads(line[len("[rank 0] "):])["zero"]
one, two = z["stages"]
assert z["stage"] == 2 and not one["fits"] and two["fits"] and two["measured"], z
assert two["predicted_peak_bytes"] <= 56 << 20 < one["predicted_peak_bytes"], z
assert two["gradient_bytes_moved_per_window"] > one["gradient_bytes_moved_per_window"], z
print(f"plan --fit: ZeRO-1 {one['predicted_peak_bytes'] / 2**20:.1f} MiB (over), ZeRO-2 "
      f"{two['predicted_peak_bytes'] / 2**20:.1f} MiB; gradient moved per window "
      f"{one['gradient_bytes_moved_per_window'] / 2**20:.1f} vs {two['gradient_bytes_moved_per_window'] / 2**20:.1f} MiB")
PY

# 5. Checkpoints. The layout of the shards is ZeRO-1's, so either stage resumes the other's.
zr=(train --model mlp --train-limit 4096 --steps 12 --global-batch 32 --micro-batch 8 --threads 1 --schedule cosine --clip 1)
launch2() { "$G" launch --nproc 2 -- "$@"; }
for dtype in fp32 bf16; do
  tol=1e-6
  [ "$dtype" = bf16 ] && tol=0
  rm -rf "$D"/zc*
  launch2 "${zr[@]}" --param-dtype "$dtype" --zero 2 --save "$D/full2.safetensors" >/dev/null 2>&1 || fail "reference"
  "$G" "${zr[@]}" --param-dtype "$dtype" --save "$D/full1.safetensors" >/dev/null 2>&1 || fail "world 1 reference"
  launch2 "${zr[@]}" --param-dtype "$dtype" --zero 2 --checkpoint-dir "$D/zc" --stop-at 5 >/dev/null 2>&1 \
    || fail "zero 2: first half"
  [ -f "$D/zc/ckpt-step-00000005.shard-1-of-2.safetensors" ] || fail "zero 2: no shard files: $(ls "$D/zc")"
  cp -r "$D/zc" "$D/zc1"
  cp -r "$D/zc" "$D/zcz1"
  launch2 "${zr[@]}" --param-dtype "$dtype" --zero 2 --resume "$D/zc" --save "$D/r22.safetensors" >"$D/r.out" 2>&1 \
    || fail "zero 2 resume 2 → 2: $(tail -3 "$D/r.out")"
  cmp -s "$D/full2.safetensors" "$D/r22.safetensors" || fail "$dtype: zero 2 resume 2 → 2 is not byte-identical"
  echo "$dtype: zero 2 resume 2 → 2 is byte-identical"
  "$G" "${zr[@]}" --param-dtype "$dtype" --resume "$D/zc1" --save "$D/r21.safetensors" >"$D/r.out" 2>&1 \
    || fail "zero 2 resume 2 → 1: $(tail -3 "$D/r.out")"
  within "$D/r21.safetensors" "$D/full1.safetensors" "$tol" "$dtype: zero 2 world 2 checkpoint resumed at world 1 vs world 1"
  launch2 "${zr[@]}" --param-dtype "$dtype" --zero 1 --resume "$D/zcz1" --save "$D/r2z1.safetensors" >"$D/r.out" 2>&1 \
    || fail "zero 2 checkpoint resumed with zero 1: $(tail -3 "$D/r.out")"
  within "$D/r2z1.safetensors" "$D/full2.safetensors" "$tol" "$dtype: zero 2 checkpoint resumed with zero 1 vs zero 2"
  "$G" "${zr[@]}" --param-dtype "$dtype" --checkpoint-dir "$D/zc0" --stop-at 5 >/dev/null 2>&1 || fail "world 1 half"
  launch2 "${zr[@]}" --param-dtype "$dtype" --zero 2 --resume "$D/zc0" --save "$D/r12.safetensors" >"$D/r.out" 2>&1 \
    || fail "zero 2 resume 1 → 2: $(tail -3 "$D/r.out")"
  within "$D/r12.safetensors" "$D/full2.safetensors" "$tol" "$dtype: world 1 checkpoint resumed with zero 2 at world 2 vs zero 2"
done

# fp16 with dynamic loss scaling: an overflowing window is skipped on every rank alike.
fz=(--model mlp --train-limit 4096 --steps 12 --micro-batch 8 --accum 2 --threads 1 --param-dtype fp16 --loss-scale-init 1e6)
run_world 2 "$D/fz.safetensors" "$D/fz.jsonl" "${fz[@]}" --zero 2
run_world 2 "$D/fp.safetensors" "$D/fp.jsonl" "${fz[@]}"
within "$D/fz.safetensors" "$D/fp.safetensors" 1e-5 "fp16 with skipped windows: zero 2 vs plain"
skipped=$(grep -c '"skipped":true' "$D/fz.jsonl")
[ "$skipped" = "$(grep -c '"skipped":true' "$D/fp.jsonl")" ] && [ "$skipped" -gt 0 ] || fail "fp16: skipped windows differ"
echo "  $skipped skipped windows in both"

# 6. Bad input: one line and exit 2; world 1 is a note.
refuses_per_micro_batch_sync 2
echo "zero 2: all checks passed"
