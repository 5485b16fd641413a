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
printf '{"train_batch_size": 64, "learning_rate": 0.1}' >"$tmp/unknown.json"
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
expect_bad "unknown optimizer 'lion'" train --optimizer lion --steps 1 --train-limit 64
expect_bad "unknown schedule" train --schedule step
expect_bad "--shuffle: 'maybe' is not on or off" train --shuffle maybe
expect_bad "lr must be positive" train --lr -1 --steps 1 --train-limit 64
expect_bad "either steps or epochs" train --steps 3 --epochs 1
expect_bad "clip must be" train --clip -1
expect_bad "not valid JSON" train --config "$tmp/broken.json"
expect_bad "unknown key 'learning_rate'" train --config "$tmp/unknown.json"
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
expect_bad "cannot open text file" train --model gpt --data "text:$tmp/none.txt" --steps 1
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
expect_bad "keep_checkpoints must lie in 1.." train --checkpoint-dir "$tmp/ck2" --keep-checkpoints 0
expect_bad "stop_at needs a checkpoint directory" train --stop-at 3
expect_bad "no such checkpoint file or directory" train --resume "$tmp/nothing-here"
expect_bad "no checkpoint (ckpt-step-*.safetensors)" train --resume "$tmp/fmnist"
expect_bad "not a gradacc checkpoint" train --model cnn --steps 1 --train-limit 64 --global-batch 64 --resume "$tmp/cnn.safetensors"
expect_bad "its model.model is mlp, this run's is cnn" train --steps 8 --train-limit 256 --global-batch 64 --resume "$ck"
expect_bad "its accumulation_steps is 1, this run's is 2" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --micro-batch 32 --resume "$ck"
cp "$ck" "$tmp/flipped.safetensors"
printf '\x55' | dd of="$tmp/flipped.safetensors" bs=1 seek=2000 conv=notrunc status=none
expect_bad "checksum mismatch" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --resume "$tmp/flipped.safetensors"
head -c 3000 "$ck" >"$tmp/short.safetensors"
expect_bad "short.safetensors" train --model mlp --steps 8 --train-limit 256 --global-batch 64 --resume "$tmp/short.safetensors"

echo "cli_bad_input: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
