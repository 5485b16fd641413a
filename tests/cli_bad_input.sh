#!/usr/bin/env bash
# Every bad flag, config value or file: exactly one line on stderr, exit status 2, no file left.
set -u
bin="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0

expect_bad() {  # expect_bad "fragment of the message" args...
  local want="$1"; shift
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -qF -- "$want" "$tmp/err"; then
    echo "FAIL: gradacc $* -> rc=$rc, $lines stderr line(s): $(head -c 300 "$tmp/err")"
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}

printf '{"train_batch_size": 64,' >"$tmp/broken.json"
printf '{"train_batch_size": 64, "learnin_rate": 0.1}' >"$tmp/unknown.json"
printf '{"gradient_accumulation_steps": "4"}' >"$tmp/type.json"
printf '{"norm": "instance"}' >"$tmp/norm.json"
printf 'not a safetensors file' >"$tmp/bad.safetensors"
"$bin" train --steps 1 --train-limit 64 --global-batch 64 --save "$tmp/cnn.safetensors" >/dev/null 2>&1 </dev/null
mkdir -p "$tmp/fmnist"
printf 'garbage' | gzip >"$tmp/fmnist/train-images-idx3-ubyte.gz"
cp /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz "$tmp/fmnist/"

expect_bad "not divisible" plan --global-batch 100 --micro-batch 32
expect_bad "does not equal" plan --global-batch 256 --micro-batch 32 --accum 4
expect_bad "micro_batch must be a positive integer, got 0" plan --micro-batch 0 --accum 2
expect_bad "accumulation_steps = 4 alone" plan --accum 4
expect_bad "no batch size" plan
expect_bad "--partial" plan --global-batch 64 --partial sometimes
expect_bad "--micro-batch" train --micro-batch abc
expect_bad "--bogus" train --bogus 1
expect_bad "unknown model 'resnet'" train --model resnet
expect_bad "unknown normalization 'instance'" train --norm instance
expect_bad "--optimizer: 'lion' is not sgd, adam or adamw" train --optimizer lion --steps 1 --train-limit 64
expect_bad "unknown schedule" train --schedule step
expect_bad "--shuffle: 'maybe' is not on or off" train --shuffle maybe
expect_bad "lr must lie in (0, 1000]" train --lr -1 --steps 1 --train-limit 64
expect_bad "either steps or epochs" train --steps 3 --epochs 1
expect_bad "clip must be" train --clip -1
expect_bad "not valid JSON" train --config "$tmp/broken.json"
expect_bad "unknown key 'learnin_rate'" train --config "$tmp/unknown.json"
expect_bad "gradient_accumulation_steps" train --config "$tmp/type.json"
expect_bad "cannot read config file" train --config "$tmp/missing.json"
expect_bad "unknown normalization 'instance'" train --config "$tmp/norm.json"
expect_bad "unknown data source" train --data imagenet
expect_bad "no such file" train --data "fashion-mnist:$tmp/nowhere" --steps 1
expect_bad "train-images-idx3-ubyte.gz" train --data "fashion-mnist:$tmp/fmnist" --steps 1
expect_bad "bad.safetensors" train --init "$tmp/bad.safetensors" --steps 1 --train-limit 64
expect_bad "cannot write log file" train --log "$tmp/no/such/dir/log.jsonl" --steps 1 --train-limit 64
expect_bad "warmup = 50 steps leaves no room" train --warmup 50 --steps 10 --train-limit 640
expect_bad "fewer than one global batch" train --train-limit 100 --partial drop --steps 1
# A diverging run stops before its first non-finite update, and saves nothing.
expect_bad "is not finite, so its update was not applied" train --model mlp --optimizer sgd --lr 1000 --steps 40 \
  --train-limit 6400 --save "$tmp/diverged.safetensors"
if [ -e "$tmp/diverged.safetensors" ]; then
  echo "FAIL: a diverged run saved its weights"
  fails=$((fails + 1))
fi

expect_bad "replaces global_batch and accumulation_steps" train --accum-schedule 0:2 --accum 4 --steps 3
expect_bad "needs steps" train --accum-schedule 0:2,10:4
expect_bad "steps must start at 0" train --accum-schedule 1:2 --steps 3
expect_bad "is not step:accumulation" train --accum-schedule 0:2,x --steps 3
expect_bad "--accum-schedule" verify --accum-schedule 0:2 --micro-batch 8

# Text data for the gpt.
: >"$tmp/empty.txt"
printf 'caf\xe9\n' >"$tmp/latin1.txt"
printf 'one short document.\n' >"$tmp/tiny.txt"
text=/usr/share/common-licenses/GPL-3
expect_bad "the text file is empty" train --model gpt --data "text:$tmp/empty.txt" --steps 1
expect_bad "not UTF-8 text (invalid byte 0xe9 at offset 3)" train --model gpt --data "text:$tmp/latin1.txt" --steps 1
expect_bad "none.txt: no such file" train --model gpt --data "text:$tmp/none.txt" --steps 1
expect_bad "context = 100000 is outside 1..8192" train --model gpt --data "text:$text" --context 100000 --steps 1
expect_bad "micro-batch of 8 is larger than the training data (1 examples)" train --model gpt --data "text:$tmp/tiny.txt" --micro-batch 8 --steps 1
expect_bad "dim = 30 is not divisible by heads = 4" train --model gpt --data "text:$text" --dim 30 --steps 1
expect_bad "the gpt takes --norm layer or rms, not batch" train --model gpt --norm batch --data "text:$text" --steps 1
expect_bad "text data needs --model gpt" train --model cnn --data "text:$text" --steps 1
expect_bad "--model gpt needs --data text:PATH" train --model gpt --steps 1
# Weights trained with a context of 32 cannot serve a model with a context of 64.
"$bin" train --model gpt --data "text:$text" --layers 1 --heads 1 --dim 8 --context 32 --global-batch 8 --steps 1 \
  --save "$tmp/gpt32.safetensors" >/dev/null 2>&1 </dev/null
expect_bad "tensor 'wpe.weight' has shape 32x8, the model needs 64x8" train --model gpt --data "text:$text" --layers 1 --heads 1 --dim 8 --context 64 --steps 1 --init "$tmp/gpt32.safetensors"
expect_bad "--temperature must be" generate --init "$tmp/gpt32.safetensors" --temperature -1
expect_bad "--init is required" generate --prompt hi
expect_bad "holds a cnn model" generate --init "$tmp/cnn.safetensors"

# A save into a directory that does not exist fails cleanly and leaves nothing behind.
expect_bad "cannot create" train --steps 1 --train-limit 64 --global-batch 64 --save "$tmp/no/dir/w.safetensors"
if ls "$tmp/no" >/dev/null 2>&1; then echo "FAIL: a failed save left files"; fails=$((fails + 1)); fi

# Precision flags.
expect_bad "unknown precision 'fp8'" train --precision fp8
expect_bad "precision fp16 does not fit it" train --param-dtype bf16 --precision fp16
expect_bad "grad_accum_dtype is fp32 or the param_dtype (fp32), not bf16" train --grad-accum-dtype bf16
expect_bad "loss scaling applies to fp16 only" train --precision bf16 --loss-scale-init 1024
expect_bad "backoff factor must lie in (0, 1), got 2" train --precision fp16 --loss-scale-backoff 2
expect_bad "growth interval must be ≥ 1" train --precision fp16 --loss-scale-interval 0

# Checkpoint flags and files.
"$bin" train --model mlp --steps 4 --train-limit 256 --global-batch 64 --checkpoint-dir "$tmp/ck" >/dev/null 2>&1 </dev/null
ck="$tmp/ck/ckpt-step-00000004.safetensors"
expect_bad "save_every needs a checkpoint directory" train --save-every 5
expect_bad "--keep-checkpoints: keep must lie in 1.." train --checkpoint-dir "$tmp/ck2" --keep-checkpoints 0
expect_bad "stop_at needs a checkpoint directory" train --stop-at 3
expect_bad "no such checkpoint file or directory" train --resume "$tmp/nothing-here"
expect_bad "no checkpoint (ckpt-step-*.safetensors)" train --resume "$tmp/fmnist"
expect_bad "not a gradacc checkpoint" train --model cnn --steps 1 --train-limit 64 --global-batch 64 --resume "$tmp/cnn.safetensors"
expect_bad "its model.model is mlp, this run's is cnn" train --steps 8 --train-limit 256 --global-batch 64 --resume "$ck"
expect_bad "its global_batch is 64, this run's is 32" train --model mlp --steps 8 --train-limit 256 --global-batch 32 --resume "$ck"
expect_bad "zero is 0, 1 (the optimizer state sharded), 2 (the gradients too), 3 (the parameters too) or auto, got 4" train --model mlp --zero 4
expect_bad "overlap starts the window's reduction during the last backward: it needs --sync window" train --model mlp --overlap on --sync every-micro-batch
"$bin" launch --nproc 2 -- train --model mlp --steps 2 --train-limit 256 \
  --global-batch 64 --zero 1 --checkpoint-dir "$tmp/zck" >/dev/null 2>&1 </dev/null
expect_bad "a ZeRO shard, not a checkpoint" train --model mlp --steps 8 --train-limit 256 --global-batch 64 \
  --resume "$tmp/zck/ckpt-step-00000002.shard-1-of-2.safetensors"
cp "$ck" "$tmp/flipped.safetensors"
# A byte of the tensor data (past the header, whose size changes with the run's identity).
printf '\x55' | dd of="$tmp/flipped.safetensors" bs=1 seek=$(($(stat -c %s "$ck") - 100)) conv=notrunc status=none
expect_bad "checksum mismatch" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --resume "$tmp/flipped.safetensors"
head -c 3000 "$ck" >"$tmp/short.safetensors"
expect_bad "short.safetensors" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --resume "$tmp/short.safetensors"

# ── Hardening (issue 18), one case per class ───────────────────────────────────────────────────
# Values that cannot be meant: non-finite, octal-looking, empty, wrapping, out of range, or
# settings of another optimizer.
expect_bad "--lr: 'nan' is not a finite number" train --lr nan
expect_bad "--clip: 'inf' is not a finite number" train --clip inf
expect_bad "--min-lr: 'nan' is not a finite number" train --min-lr nan
expect_bad "--weight-decay: 'inf' is not a finite number" train --weight-decay inf
expect_bad "--micro-batch: '010' has a leading zero" train --micro-batch 010
expect_bad "--lr: a number is expected, got nothing" train --lr ""
expect_bad "--data: must not be empty" train --data ""
expect_bad "--seed: '18446744073709551616' does not fit a 64-bit integer" train --seed 18446744073709551616
expect_bad "--epochs: '99999999999999999999' does not fit" train --epochs 99999999999999999999
expect_bad "threads must lie in 0..1024, got 100000" train --threads 100000
expect_bad "momentum and nesterov apply to sgd, not adamw" train --momentum 0.9 --steps 1 --train-limit 64
expect_bad "betas and eps apply to adam and adamw, not sgd" train --optimizer sgd --betas 0.8,0.99 --steps 1 --train-limit 64
expect_bad "larger than 1099511627776" train --micro-batch 64 --accum 288230376151711744
expect_bad "larger than 1099511627776" plan --micro-batch 64 --accum 288230376151711744
expect_bad "larger than 1099511627776" plan --micro-batch 4294967296 --world-size 4294967296
printf '{"steps": 4, "train_limit": 64, "model": "mlp", "train_batch_size": 32}' >"$tmp/steps.json"
"$bin" train --config "$tmp/steps.json" --progress off >"$tmp/steps.out" 2>&1 </dev/null \
  && grep -q "trained 4 optimizer steps" "$tmp/steps.out" \
  && passes=$((passes + 1)) || { echo "FAIL: a config with steps alone: $(cat "$tmp/steps.out")"; fails=$((fails + 1)); }
# No crash on hostile JSON: 100,000 nested arrays, and a number that does not fit.
{ printf '{"lr": '; head -c 100000 /dev/zero | tr '\0' '['; } >"$tmp/deep.json"
expect_bad "nested deeper than 32 levels" train --config "$tmp/deep.json"
printf '{"train_batch_size": 18446744073709551615}' >"$tmp/big.json"
expect_bad "does not fit 64 bits" train --config "$tmp/big.json"
# No hang: a FIFO given where a regular file is expected is refused before it is opened.
mkfifo "$tmp/fifo"
expect_bad "the config must be a regular file" train --config "$tmp/fifo"
expect_bad "is not a regular file" train --init "$tmp/fifo" --steps 1 --train-limit 64
expect_bad "is not a regular file" train --model gpt --data "text:$tmp/fifo" --steps 1
expect_bad "is not a regular file" plot "$tmp/fifo" -o "$tmp/p.png"
# No crash: a 170-byte weights file that claims a huge gpt and holds nothing.
"$bin" train --model mlp --steps 1 --train-limit 64 --global-batch 64 --save "$tmp/m.safetensors" >/dev/null 2>&1 </dev/null
python3 - "$tmp/huge.safetensors" <<'PY'
import json, struct, sys
meta = {"__metadata__": {"format": "pt", "model": "gpt", "norm": "layer", "layers": "4096", "heads": "64", "dim": "8192", "context": "8192"}}
h = json.dumps(meta).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)
PY
expect_bad "holds 0 weights, but a gpt of 4096 layers" generate --init "$tmp/huge.safetensors"
# No data loss: two options naming one file are refused before anything is written.
expect_bad "--log and --save name the same file" train --steps 1 --train-limit 64 --log "$tmp/same" --save "$tmp/same"
cp "$tmp/steps.json" "$tmp/keep.json"
expect_bad "--log and --config name the same file" train --config "$tmp/keep.json" --log "$tmp/keep.json"
cmp -s "$tmp/steps.json" "$tmp/keep.json" || { echo "FAIL: the config was overwritten"; fails=$((fails + 1)); }
expect_bad "--log and --init name the same file" train --steps 1 --train-limit 64 --init "$tmp/m.safetensors" --log "$tmp/m.safetensors"
expect_bad "--log and --resume name the same file" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --resume "$ck" --log "$ck"
expect_bad "already holds checkpoints" train --model mlp --steps 4 --train-limit 256 --global-batch 64 --checkpoint-dir "$tmp/ck"
# A write that fails (a full disk) is an error, not a silent empty log.
if [ -w /dev/full ]; then
  expect_bad "cannot write log file /dev/full" train --model mlp --steps 2 --train-limit 64 --global-batch 32 --log /dev/full
fi
# Input never becomes gnuplot code.
"$bin" train --model mlp --steps 2 --train-limit 64 --global-batch 32 --log "$tmp/p.jsonl" >/dev/null 2>&1 </dev/null
expect_bad "--title 'x'\\x0asystem(" plot "$tmp/p.jsonl" -o "$tmp/p.png" --title "x'
system(\"touch $tmp/pwned\")
set title 'y"
expect_bad "holds a control character" plot "$tmp/p.jsonl" -o "$tmp/p.png" --labels "a
system(\"touch $tmp/pwned\")"
[ -e "$tmp/pwned" ] && { echo "FAIL: gnuplot ran injected code"; fails=$((fails + 1)); }

# Memory budgets: a malformed size, below the static need, an explicit micro-batch that does not
# fit, accumulation without the global batch, --fit without a budget; nothing written.
expect_bad "--memory-budget: '12 parsecs' is not a size" train --memory-budget "12 parsecs" --global-batch 64
expect_bad "--memory-budget: '0' is not in 1..2^60" train --memory-budget 0 --global-batch 64
expect_bad "is below the static need" train --model mlp --train-limit 256 --global-batch 64 --memory-budget 100KiB --log "$tmp/mem.jsonl"
[ -e "$tmp/mem.jsonl" ] && { echo "FAIL: a refused budget wrote its log"; fails=$((fails + 1)); }
expect_bad "micro_batch 256 needs" train --model cnn --train-limit 512 --global-batch 512 --micro-batch 256 --memory-budget 250MiB
expect_bad "memory_budget with accumulation_steps needs global_batch" train --model mlp --train-limit 256 --micro-batch 8 --accum 4 --memory-budget 1GiB
expect_bad "plan --fit needs --memory-budget" plan --fit --global-batch 64
expect_bad "add --fit" plan --global-batch 64 --memory-budget 1GiB
expect_bad "--activation-checkpointing: 'layers' is not off or blocks" train --activation-checkpointing layers
expect_bad "this model has no blocks to checkpoint" train --model mlp --train-limit 64 --global-batch 64 --steps 1 --activation-checkpointing blocks

# Foreign configs: a DeepSpeed feature gradacc lacks, a typo with its suggestion, a bad format name.
printf '{"train_batch_size": 64, "zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}}' >"$tmp/ds_offload.json"
printf '{"train_batch_size": 64, "gradient_cliping": 1.0}' >"$tmp/ds_typo.json"
printf '{"per_device_train_batch_size": 8, "adafactor": true}' >"$tmp/hf_smooth.json"
expect_bad "DeepSpeed key \`zero_optimization.offload_optimizer.device\` is not supported by gradacc" train --config "$tmp/ds_offload.json"
expect_bad "unknown key 'gradient_cliping' (did you mean 'gradient_clipping'?)" train --config "$tmp/ds_typo.json"
expect_bad "is not supported by gradacc (only its default, false)" train --config "$tmp/hf_smooth.json"
expect_bad "label_smoothing must lie in [0, 1), got 1.5" train --model mlp --train-limit 64 --steps 1 --label-smoothing 1.5
expect_bad "unknown config format 'yaml'" train --config "$tmp/ds_typo.json" --config-format yaml
expect_bad "--config-format goes with --config" train --config-format hf

# The noise scale needs a window of more than one micro-batch.
expect_bad "noise_scale needs a window of more than one micro-batch" train --model mlp --train-limit 64 --global-batch 32 --micro-batch 32 --noise-scale on
expect_bad "noise_scale_ema must be a finite number in [0, 0.999999]" train --model mlp --train-limit 64 --global-batch 32 --micro-batch 8 --noise-scale on --noise-scale-ema 1

# --accum auto decides the accumulation: nothing else may fix the batch.
printf '{"gradient_accumulation_steps": "auto", "train_micro_batch_size_per_gpu": 8}' >"$tmp/ds_auto.json"
expect_bad "drop the accumulation schedule" train --model mlp --train-limit 64 --micro-batch 8 --steps 4 --accum auto --accum-schedule 0:2
expect_bad "drop global_batch" train --model mlp --train-limit 64 --micro-batch 8 --steps 4 --accum auto --global-batch 32
expect_bad "accum auto needs steps" train --model mlp --train-limit 64 --micro-batch 8 --accum auto
expect_bad "MIN ≥ 2" train --model mlp --train-limit 64 --micro-batch 8 --steps 4 --accum auto:1:8
expect_bad "--accum: 'auto:8:4': needs 1 ≤ MIN ≤ MAX" train --accum auto:8:4
expect_bad "--accum: 'autopilot' is not auto, auto:MAX or auto:MIN:MAX" train --accum autopilot
expect_bad "key 'gradient_accumulation_steps' = \"auto\": an integer is expected" train --config "$tmp/ds_auto.json"
expect_bad "give a number to accum, not auto" verify --model mlp --train-limit 64 --micro-batch 8 --accum auto

# Token-budget micro-batches: the window is the global batch, cut by tokens, for text only.
gpl=(--model gpt --data text:/usr/share/common-licenses/GPL-3 --layers 1 --heads 2 --dim 32 --context 64 --steps 1)
expect_bad "drop micro_batch and accumulation_steps" train "${gpl[@]}" --micro-batching tokens:256 --global-batch 32 --micro-batch 8
expect_bad "drop micro_batch and accumulation_steps" train "${gpl[@]}" --micro-batching tokens:256 --global-batch 32 --accum 4
expect_bad "tokens:16 is smaller than the longest sequence (64 tokens)" train "${gpl[@]}" --micro-batching tokens:16 --global-batch 32
expect_bad "needs sequence data (text)" train --model mlp --train-limit 64 --micro-batching tokens:256 --global-batch 32
expect_bad "--micro-batching: tokens:N needs N ≥ 1, got 0" train --micro-batching tokens:0
expect_bad "--micro-batching: 'rows:4' is not fixed, tokens:N or tokens" train --micro-batching rows:4
expect_bad "micro_batching tokens without N needs memory_budget" train "${gpl[@]}" --micro-batching tokens --global-batch 32
expect_bad "the largest that fits is tokens:" train "${gpl[@]}" --micro-batching tokens:2048 --global-batch 32 --memory-budget 3MiB
expect_bad "packing is for text data" train --model mlp --train-limit 64 --packing on
expect_bad "--packing: 'sometimes' is not on or off" train "${gpl[@]}" --packing sometimes

# Hostile input that used to get through (issue 31), one line each.
printf '{"per_device_train_batch_size": 8, "bf16": true, "fp16": true}' >"$tmp/hf_both.json"
printf '{"train_batch_size": 64, "train_batch_size": 32}' >"$tmp/dup.json"
printf '{"optimizer": {"type": "AdamW", "params": {"lr": 0.1, "lr": 0.2}}, "train_batch_size": 64}' >"$tmp/dup_inner.json"
expect_bad "bf16 and fp16 are both true: choose one" train --config "$tmp/hf_both.json"
expect_bad "the key \"train_batch_size\" is given twice in one object" train --config "$tmp/dup.json"
expect_bad "the key \"lr\" is given twice in one object" train --config "$tmp/dup_inner.json"
expect_bad "--train-limit: must be ≥ 0, got -1" train --train-limit -1
expect_bad "it is a directory, not a file" train --model mlp --train-limit 64 --steps 1 --profile /
expect_bad "--log and --profile name the same file" train --model mlp --train-limit 64 --steps 1 --log "$tmp/same.json" --profile "$tmp/same.json"
expect_bad "--init and --resume both given" train --model mlp --train-limit 64 --steps 1 --init "$tmp/cnn.safetensors" --resume "$tmp/cnn.safetensors"
expect_bad "--grace: seconds between SIGTERM and SIGKILL lie in 0..3600, got -1" launch --nproc 1 --grace -1 -- train
expect_bad "--grace: seconds between SIGTERM and SIGKILL lie in 0..3600, got 1e300" launch --nproc 1 --grace 1e300 -- train
expect_bad "--zero: expected 0, 1, 2, 3 or auto, got -1" train --zero -1
expect_bad "zero auto lets the memory planner choose" train --model mlp --train-limit 64 --zero auto --world-size 1 --steps 1 --global-batch 32 --micro-batch 8
cp "$tmp/cnn.safetensors" "$tmp/tail.safetensors" && printf 'extra' >>"$tmp/tail.safetensors"
expect_bad "5 bytes after the last tensor's data belong to no tensor" train --init "$tmp/tail.safetensors" --steps 1 --train-limit 64
mkdir -p "$tmp/fmtail" && cp /usr/share/datasets/fashion-mnist/*.gz "$tmp/fmtail/" \
  && printf 'garbage' >>"$tmp/fmtail/train-labels-idx1-ubyte.gz"
expect_bad "has bytes after its gzip stream" train --data "fashion-mnist:$tmp/fmtail" --steps 1

expect_bad "--config-format goes with --from-config FILE" options --config-format hf
expect_bad "cannot read config file" options --from-config "$tmp/missing.json"

# A --steps flag wins over Hugging Face's default epoch count (not over the file's own).
printf '{"per_device_train_batch_size": 8, "learning_rate": 0.001}' >"$tmp/hf_plain.json"
if "$bin" train --config "$tmp/hf_plain.json" --model mlp --train-limit 64 --steps 1 >"$tmp/out" 2>&1 </dev/null; then
  passes=$((passes + 1))
else
  echo "FAIL: --steps beside an HF config without num_train_epochs: $(tail -1 "$tmp/out")"; fails=$((fails + 1))
fi
printf '{"per_device_train_batch_size": 8, "num_train_epochs": 2}' >"$tmp/hf_epochs.json"
expect_bad "either steps or epochs" train --config "$tmp/hf_epochs.json" --model mlp --train-limit 64 --steps 1

echo "cli_bad_input: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
