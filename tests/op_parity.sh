#!/usr/bin/env bash
# gradacc's gpt calls the same compute operators, as often, as the same model written in PyTorch
# (tests/torch_reference.py) trained by the plain Python loop (bench/peers.py --loop seed): the
# same micro-batches, profiled over optimizer steps 3-5 by both (`train --profile`, `peers.py
# --profile`), counted by bench/trace_compare.py. This is what keeps gradacc's step from doing more
# work than PyTorch's for the same model: a Linear written as mm + a separate bias pass (the C++
# frontend's Linear::forward on [B, T, D] input) changes these counts, and on a GPU each extra pass
# is a kernel over the activations (docs/gpu.md). fp32 on the CPU: under bf16 autocast gradacc's CPU
# attention runs in fp32 on purpose, which adds casts the reference does not have.
# Usage: op_parity.sh GRADACC PYTHON
set -u
G="$1" PY="$2"
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

text=/usr/share/common-licenses/GPL-3
[ -f "$text" ] || fail "no $text to train on"
"$PY" - "$here" "$tmp" "$text" <<'PY' || fail "could not write the initial weights"
import sys
here, tmp, text = sys.argv[1:]
sys.path[:0] = [here + "/bench", here + "/tests"]
import gpu
gpu.SHAPE.update(layers=2, heads=2, dim=64, context=64)
gpu.write_init(tmp + "/init.safetensors")
gpu.one_document(text, tmp + "/doc.txt")
PY
"$G" train --model gpt --data "text:$tmp/doc.txt" --init "$tmp/init.safetensors" --micro-batch 4 --accum 3 \
  --steps 5 --lr 6e-4 --precision fp32 --optimizer adamw --weight-decay 0.0 --schedule constant --clip 0 --shuffle on \
  --layers 2 --heads 2 --dim 64 --context 64 --threads 1 --progress off --profile "$tmp/gradacc.json" \
  >"$tmp/g.out" 2>&1 || fail "gradacc train --profile: $(tail -n 3 "$tmp/g.out")"
"$PY" "$here/bench/peers.py" --loop seed --model gpt --norm layer --init "$tmp/init.safetensors" \
  --data "text:$tmp/doc.txt" --context 64 --micro-batch 4 --accum 3 --steps 5 --warmup 2 --lr 6e-4 \
  --precision fp32 --threads 1 --profile "$tmp/seed.json" >"$tmp/s.out" 2>&1 ||
  fail "seed loop --profile: $(tail -n 3 "$tmp/s.out")"

# The operators that do a pass over activations or weights in the forward and backward of the
# model and its loss (the optimizer and the data path differ by design and are not compared).
ops=aten::addmm,aten::mm,aten::add,aten::native_layer_norm,aten::native_layer_norm_backward,aten::gelu
ops+=,aten::gelu_backward,aten::_scaled_dot_product_flash_attention_for_cpu
ops+=,aten::_scaled_dot_product_flash_attention_for_cpu_backward,aten::embedding_dense_backward
ops+=,aten::_log_softmax,aten::_log_softmax_backward_data,aten::nll_loss_forward,aten::nll_loss_backward
"$PY" "$here/bench/trace_compare.py" "$tmp/gradacc.json" "$tmp/seed.json" --names gradacc,seed \
  --require-equal "$ops" >"$tmp/cmp.out" 2>&1 || fail "$(tail -n 1 "$tmp/cmp.out")"
head -n 1 "$tmp/cmp.out"
echo "op parity: the $(echo "$ops" | tr ',' '\n' | wc -l) compute operators of gpt's forward and backward are called as often as in PyTorch's loop"
