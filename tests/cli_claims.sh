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
echo "cli claims: ok"
