#!/usr/bin/env bash
# What the README claims of the command line, each checked so that it fails when the claim is false:
# `plan` prints the resolved plan; `verify` exits 1 when accumulation cannot match (BatchNorm);
# SIGINT finishes the window, checkpoints and exits 130; `generate` produces the bytes asked for;
# --precision bf16 changes the computation and --param-dtype bf16 the stored weights.
# Usage: cli_claims.sh GRADACC PYTHON
set -u
G="$1" PY="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$("$G" plan --global-batch 256 --micro-batch 32 --dataset-size 1000) || fail "plan exited $?"
echo "$out" | grep -q "accumulation steps  8" && echo "$out" | grep -q "windows per epoch   4 (3 full + 1 partial)" \
  && echo "$out" | grep -q "last window         232 samples" || fail "plan printed: $out"
echo "plan: accumulation 8, 3 full windows + 1 of 232"

"$G" verify --model cnn --norm batch --train-limit 512 --global-batch 128 --micro-batch 16 --steps 2 >"$tmp/v.out" 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "FAIL" "$tmp/v.out" && grep -q "BatchNorm" "$tmp/v.out" || fail "verify with BatchNorm exited $rc"
echo "verify: exit 1 on BatchNorm, with the reason"

"$G" train --model mlp --train-limit 4096 --global-batch 64 --micro-batch 16 --steps 100000 --threads 1 \
  --checkpoint-dir "$tmp/ck" --log "$tmp/int.jsonl" >"$tmp/int.out" 2>&1 &
pid=$!
steps_logged() { local n; n=$(grep -c '"step"' "$1" 2>/dev/null); echo "${n:-0}"; }
for _ in $(seq 600); do [ "$(steps_logged "$tmp/int.jsonl")" -ge 5 ] && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"
rc=$?
step=$(grep -o 'after step [0-9]*' "$tmp/int.out" | grep -o '[0-9]*')
[ "$rc" -eq 130 ] && grep -q "interrupted (SIGINT)" "$tmp/int.out" \
  && [ -f "$tmp/ck/ckpt-step-$(printf %08d "$step").safetensors" ] || fail "SIGINT: exit $rc: $(cat "$tmp/int.out")"
echo "SIGINT: exit 130 after step $step, checkpoint written"

text=/usr/share/common-licenses/GPL-3
"$G" train --model gpt --data "text:$text" --layers 1 --heads 1 --dim 16 --context 32 --global-batch 8 --steps 2 \
  --save "$tmp/g.safetensors" >/dev/null 2>&1 || fail "gpt train"
"$G" generate --init "$tmp/g.safetensors" --prompt "The " --tokens 40 --seed 3 >"$tmp/gen.out" 2>&1 || fail "generate"
bytes=$(head -c -1 "$tmp/gen.out" | wc -c)  # without the trailing newline
[ "$bytes" -eq 44 ] || fail "generate wrote $bytes bytes, not 4 + 40"
"$G" generate --init "$tmp/g.safetensors" --prompt "The " --tokens 40 --seed 3 | cmp -s - "$tmp/gen.out" || fail "same seed, other text"
echo "generate: 40 bytes after the prompt, the same for the same seed"

# A text of one document holds nothing out: the run says so instead of reporting 0 bits per byte.
grep -v '^[[:space:]]*$' "$text" >"$tmp/one_doc.txt"
out=$("$G" train --model gpt --data "text:$tmp/one_doc.txt" --layers 1 --heads 1 --dim 16 --context 32 \
  --global-batch 8 --steps 1 2>&1) || fail "gpt train on one document: $out"
echo "$out" | grep -q "no validation: every 10th document" && ! echo "$out" | grep -q "bits/byte" ||
  fail "one document: $out"
echo "one document: no validation, said in words"

common=(--model mlp --train-limit 256 --global-batch 64 --micro-batch 16 --steps 1 --threads 1)
"$G" train "${common[@]}" --log "$tmp/fp32.jsonl" >/dev/null 2>&1 || fail "fp32 run"
"$G" train "${common[@]}" --precision bf16 --log "$tmp/bf16.jsonl" >/dev/null 2>&1 || fail "bf16 run"
"$G" train "${common[@]}" --param-dtype bf16 --save "$tmp/p.safetensors" >/dev/null 2>&1 || fail "bf16 params run"
"$PY" - "$tmp/fp32.jsonl" "$tmp/bf16.jsonl" "$tmp/p.safetensors" <<'PY' || fail "precision flags had no effect"
import json, sys
from safetensors.torch import load_file
loss = [next(json.loads(l)["loss"] for l in open(p) if '"step"' in l) for p in sys.argv[1:3]]
rel = abs(loss[0] - loss[1]) / loss[0]
dtypes = {str(t.dtype) for t in load_file(sys.argv[3]).values()}
print(f"precision: bf16 autocast moves the first loss by {rel:.1e} (fp32 {loss[0]:.6f}); --param-dtype bf16 saves {dtypes}")
assert 1e-6 < rel < 5e-2, rel
assert dtypes == {"torch.bfloat16"}, dtypes
PY
# Resuming a run that is already complete runs no window and says so (not a loss of 0).
"$G" train --model mlp --steps 2 --train-limit 256 --global-batch 64 --checkpoint-dir "$tmp/done" >/dev/null 2>&1 \
  || fail "run to resume"
out=$("$G" train --model mlp --steps 2 --train-limit 256 --global-batch 64 --resume "$tmp/done" 2>&1) \
  || fail "resume of a complete run: $out"
echo "$out" | grep -q "no window left to run" || fail "resume of a complete run: $out"

# Memory budget (docs/memory.md): plan --fit prints a plan; a train with the same flags holds every
# step's peak within the budget; verify passes with checkpointing on and a planned, uneven batch.
M="--model gpt --layers 2 --dim 64 --heads 4 --context 64 --data text:/usr/share/common-licenses/GPL-3 --global-batch 64"
"$G" plan --fit --memory-budget 12MiB $M --json >"$tmp/fit.json" || fail "plan --fit exited $?"
"$G" train $M --memory-budget 12MiB --steps 5 --log "$tmp/mem.jsonl" >"$tmp/mem.out" 2>&1 || fail "budgeted train: $(cat "$tmp/mem.out")"
"$G" verify $M --memory-budget 8MiB --activation-checkpointing blocks --steps 2 >"$tmp/mv.out" 2>&1 \
  || fail "verify with checkpointing: $(cat "$tmp/mv.out")"
"$PY" - "$tmp/fit.json" "$tmp/mem.jsonl" "$tmp/mv.out" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
steps = [json.loads(l) for l in open(sys.argv[2]) if '"step"' in l]
budget = 12 << 20
assert plan["budget_bytes"] == budget and 1 < plan["micro_batch"] < 64, plan
assert plan["micro_batch"] * plan["accumulation_steps"] >= 64 > plan["micro_batch"] * (plan["accumulation_steps"] - 1), plan
assert plan["predicted_peak_bytes"] <= budget, plan
assert len(steps) == 5 and all(s["peak_bytes"] <= budget and s["micro_batch"] == plan["micro_batch"] for s in steps), steps
verify = open(sys.argv[3]).read()
assert "PASS" in verify, verify
print(f"memory: micro {plan['micro_batch']} x {plan['accumulation_steps']}, predicted {plan['predicted_peak_bytes']}, "
      f"steps peak at most {max(s['peak_bytes'] for s in steps)} of {budget}; verify with checkpointing passes")
PY
[ $? -eq 0 ] || fail "memory budget claims"
# The memory budget with token-budget micro-batches: plan --fit chooses N, and a train with it keeps
# every step within the budget; verify passes with the planned N.
"$G" plan --fit --memory-budget 12MiB $M --micro-batching tokens --json >"$tmp/fitt.json" || fail "plan --fit tokens"
"$G" train $M --memory-budget 12MiB --micro-batching tokens --steps 4 --log "$tmp/memt.jsonl" >"$tmp/memt.out" 2>&1 \
  || fail "budgeted train with tokens: $(cat "$tmp/memt.out")"
"$G" verify $M --memory-budget 12MiB --micro-batching tokens --steps 2 >"$tmp/mvt.out" 2>&1 \
  || fail "verify with a planned token budget: $(cat "$tmp/mvt.out")"
"$PY" - "$tmp/fitt.json" "$tmp/memt.jsonl" "$tmp/mvt.out" "$tmp/memt.out" <<'PY'
import json, re, sys
plan = json.load(open(sys.argv[1]))
steps = [json.loads(l) for l in open(sys.argv[2]) if '"step"' in l]
budget = 12 << 20
n = plan["micro_batch_tokens"]
assert 64 <= n < 64 * 64 and plan["predicted_peak_bytes"] <= budget, plan
assert f"micro_batching=tokens:{n}" in open(sys.argv[4]).read()
assert len(steps) == 4 and all(s["peak_bytes"] <= budget and s["oom_replays"] == 0 for s in steps), steps
verify = open(sys.argv[3]).read()  # verify plans in its own process, beside its reference run
assert "PASS" in verify and re.search(r"in micro-batches of at most \d+ tokens", verify), verify
print(f"memory with tokens: tokens:{n}, steps peak at most {max(s['peak_bytes'] for s in steps)} of {budget}")
PY
[ $? -eq 0 ] || fail "memory budget with token budgets"

# Configs users already have (docs/config.md): the DeepSpeed file of issue 16 and a Hugging Face
# TrainingArguments JSON with bf16 and cosine warmup both train; unsupported keys and typos are
# one line each.
cat >"$tmp/ds.json" <<'JSON'
{"train_batch_size": 64, "train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 4,
 "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}},
 "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.001, "warmup_num_steps": 10, "total_num_steps": 100}},
 "fp16": {"enabled": false}, "bf16": {"enabled": true}, "zero_optimization": {"stage": 0}, "steps_per_print": 10}
JSON
cat >"$tmp/hf.json" <<JSON
{"output_dir": "$tmp/hf_out", "per_device_train_batch_size": 16, "gradient_accumulation_steps": 4,
 "learning_rate": 0.001, "weight_decay": 0.01, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-08,
 "max_grad_norm": 1.0, "num_train_epochs": 3.0, "max_steps": 4, "lr_scheduler_type": "cosine", "warmup_ratio": 0.5,
 "warmup_steps": 0, "logging_steps": 1, "save_strategy": "steps", "save_steps": 500, "save_total_limit": null,
 "seed": 42, "bf16": true, "fp16": false, "report_to": ["none"], "push_to_hub": false, "eval_strategy": "no"}
JSON
"$G" train --config "$tmp/ds.json" --model mlp --train-limit 640 --steps 3 --log "$tmp/ds.jsonl" >"$tmp/ds.out" 2>&1 \
  || fail "DeepSpeed config: $(cat "$tmp/ds.out")"
grep -q "params=BFloat16 grad_accum=fp32" "$tmp/ds.out" || fail "DeepSpeed bf16 block not applied: $(cat "$tmp/ds.out")"
"$G" train --config "$tmp/hf.json" --model mlp --train-limit 640 --log "$tmp/hf.jsonl" >"$tmp/hf.out" 2>&1 \
  || fail "Hugging Face config: $(cat "$tmp/hf.out")"
grep -q "precision=bf16" "$tmp/hf.out" && grep -q "^step 4/4 loss" "$tmp/hf.out" && grep -q "were ignored: .*report_to" "$tmp/hf.out" \
  || fail "Hugging Face config output: $(cat "$tmp/hf.out")"
"$PY" - "$tmp/ds.jsonl" "$tmp/hf.jsonl" <<'PY'
import json, math, sys
ds = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
hf = [json.loads(l) for l in open(sys.argv[2]) if '"step"' in l]
# WarmupDecayLR, log warmup over 10 steps from 0 to 1e-3: update s at log(s+1)/log(10).
want = [1e-3 * math.log(s + 1) / math.log(10) for s in range(3)]
assert all(abs(r["lr"] - w) < 1e-15 for r, w in zip(ds, want)), [r["lr"] for r in ds]
# HF cosine, warmup ceil(0.5 * 4) = 2 from 0: 0, 5e-4, then cosine over the 2 remaining steps.
want = [0.0, 5e-4, 1e-3, 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5))]
assert all(abs(r["lr"] - w) < 1e-15 for r, w in zip(hf, want)), [r["lr"] for r in hf]
print(f"configs: DeepSpeed lr {[round(r['lr'], 8) for r in ds]}, Hugging Face lr {[r['lr'] for r in hf]}")
PY
[ $? -eq 0 ] || fail "config LR curves"

# The gradient noise scale rides in every step's log line.
"$G" train --model mlp --train-limit 2048 --global-batch 256 --micro-batch 32 --steps 8 --noise-scale on \
  --log "$tmp/noise.jsonl" >"$tmp/noise.out" 2>&1 || fail "noise scale run: $(cat "$tmp/noise.out")"
"$PY" - "$tmp/noise.jsonl" <<'PY' || fail "noise scale in the log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
assert len(rows) == 8 and all("noise_scale" in r and "grad_sq_est" in r and "trace_sigma_est" in r for r in rows), rows[0]
assert rows[-1]["noise_scale"] > 0, rows[-1]
print(f"noise scale: {rows[-1]['noise_scale']:.1f} after 8 steps (tr Σ {rows[-1]['trace_sigma_est']:.3g}, |G|² {rows[-1]['grad_sq_est']:.3g})")
PY

# --accum auto: the accumulation follows the noise scale (mlp: ~100 examples, micro-batches of 4).
"$G" train --model mlp --train-limit 2048 --micro-batch 4 --accum auto:24 --accum-auto-warmup 6 --accum-auto-every 5 \
  --steps 24 --log "$tmp/auto.jsonl" >"$tmp/auto.out" 2>&1 || fail "accum auto run: $(cat "$tmp/auto.out")"
"$PY" - "$tmp/auto.jsonl" <<'PY' || fail "accum auto changes the accumulation"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
accums = [r["micro_batches"] for r in rows]
assert len(rows) == 24 and accums[0] == 2 and len(set(accums)) > 1, accums
# Held between decisions: changes only after steps 6, 11, 16, 21.
changes = [i for i in range(1, 24) if accums[i] != accums[i - 1]]
assert all(i in (6, 11, 16, 21) for i in changes), (changes, accums)
assert all(r["samples"] == 4 * a for r, a in zip(rows, accums)), "windows of micro-batch × accumulation"
print(f"accum auto: micro-batches per window {accums[0]} → {accums[-1]}, changed after steps {[i for i in changes]}")
PY

# --eval-every: held-out records between steps, kept in the log; the last equals the final evaluation.
"$G" train --model mlp --train-limit 1024 --global-batch 64 --steps 6 --eval-every 3 --log "$tmp/eval.jsonl" \
  >"$tmp/eval.out" 2>&1 || fail "eval-every run: $(cat "$tmp/eval.out")"
"$PY" - "$tmp/eval.jsonl" <<'PY' || fail "eval-every records"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
evals = [r for r in rows if "at_step" in r]
final = [r for r in rows if r.get("event") == "eval" and "at_step" not in r]
assert [e["at_step"] for e in evals] == [3, 6] and all("loss" in e for e in evals), evals
assert len([r for r in rows if "step" in r]) == 6, "step lines lost"
assert abs(evals[-1]["accuracy"] - final[0]["accuracy"]) < 1e-12, (evals[-1], final)
print(f"eval-every: test loss {evals[0]['loss']:.3f} → {evals[1]['loss']:.3f}, accuracy {evals[1]['accuracy']:.4f}")
PY

# plan with token budgets names the budget, not a micro-batch of the whole share.
out=$("$G" plan --global-batch 64 --micro-batching tokens:512) || fail "plan with a token budget"
echo "$out" | grep -q "micro-batches       of at most 512 tokens" || fail "plan with a token budget: $out"
echo "$out" | grep -q "accumulation steps" && fail "plan with a token budget shows an accumulation: $out"

# --profile: LibTorch's profiler over steps 3-5, the phases named; bench/profile_summary.py sums it.
"$G" train --model mlp --train-limit 1024 --global-batch 64 --micro-batch 16 --steps 6 --profile "$tmp/trace.json" \
  >"$tmp/profile.out" 2>&1 || fail "profile run: $(cat "$tmp/profile.out")"
python3 "$(dirname "$0")/../bench/profile_summary.py" "$tmp/trace.json" >"$tmp/profile.txt" || fail "bench/profile_summary.py on the trace"
for phase in data forward_and_loss backward_and_accumulate window_boundary; do
  grep -q "gradacc::$phase" "$tmp/profile.txt" || fail "phase gradacc::$phase missing from the profile"
done
grep -q "| aten::mm\|| aten::addmm" "$tmp/profile.txt" || fail "no GEMM in the profile: $(head -20 "$tmp/profile.txt")"
echo "profile: $(grep -c 'gradacc::' "$tmp/profile.txt") phases, $(grep -c '| aten::' "$tmp/profile.txt") operators listed"

echo "cli claims: ok"
