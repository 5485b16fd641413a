#!/usr/bin/env bash
# Runs gradacc_fuzz (built with ASan + UBSan) on every reader of untrusted input for a bounded
# time each, seeded with real files: config JSON, flag values, safetensors weights, a checkpoint,
# IDX files (gzip and plain) and UTF-8 text. Any finding fails the test and leaves its input in
# the working directory. Usage: fuzz.sh GRADACC_FUZZ GRADACC [SECONDS]
set -u
fuzz="$1" G="$2" secs="${3:-${GRADACC_FUZZ_SECONDS:-15}}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
s="$tmp/seeds"
mkdir -p "$s"
fail=0

printf '{"model": "cnn", "norm": "group", "train_batch_size": 512, "train_micro_batch_size_per_gpu": 64,\n "optimizer": {"type": "AdamW", "params": {"lr": 0.002, "weight_decay": 0.01, "betas": [0.9, 0.95]}},\n "schedule": "cosine", "gradient_clipping": 1.0, "epochs": 2}' >"$s/c1.json"
printf '{"micro_batch": 8, "accum_schedule": "0:2,10:4", "steps": 20, "precision": "fp16", "loss_scale_init": 1024, "seed": 3}' >"$s/c2.json"
printf '{"steps": 5, "warmup": 2, "data_types": {"grad_accum_dtype": "fp32"}, "checkpoint_dir": "ck", "save_every": 2}' >"$s/c3.json"
# Flag seeds: the first byte picks a row of the options table, the rest is the value.
i=0
for v in 16 0.001 on cuda:0 0:2,10:4 fp16 rescale 0.9,0.999 -3 1e-8 text:/nonexistent 4096; do
  printf "\\x$(printf %02x $((i * 5 % 256)))\n%s" "$v" >"$s/f$i"
  i=$((i + 1))
done
"$G" train --model mlp --steps 2 --train-limit 64 --global-batch 32 --save "$s/w.safetensors" --checkpoint-dir "$tmp/ck" \
  --progress off >/dev/null 2>&1 || { echo "FAIL: seed run"; exit 1; }
cp "$tmp"/ck/ckpt-step-*.safetensors "$s/ckpt.safetensors"
cp /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz "$s/labels.gz"
gzip -dc /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz | head -c 200 >"$s/labels.idx"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02abcdefgh' >"$s/images.idx"
head -c 3000 /usr/share/common-licenses/GPL-3 >"$s/gpl.txt"
printf 'one\n\ntwo paragraphs, caf\xc3\xa9\n' >"$s/utf8.txt"

run() {  # run TARGET SEEDS...
  local target=$1; shift
  if ! (cd "$tmp" && "$fuzz" "$target" "$secs" 7 "$@"); then
    echo "FAIL: fuzz $target: $(ls "$tmp"/fuzz-finding-* 2>/dev/null)"
    cp "$tmp"/fuzz-finding-* . 2>/dev/null
    fail=1
  fi
}
run config "$s"/c*.json
run flags "$s"/f*
run safetensors "$s/w.safetensors" "$s/ckpt.safetensors"
run checkpoint "$s/ckpt.safetensors"
run idx "$s/labels.gz" "$s/labels.idx" "$s/images.idx"
run text "$s/gpl.txt" "$s/utf8.txt"
[ "$fail" -eq 0 ] && echo "fuzz: every target ran ${secs} s with no finding"
exit "$fail"
